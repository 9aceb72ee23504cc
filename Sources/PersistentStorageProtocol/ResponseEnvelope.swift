#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The JSON envelope of every HTTP answer: `{"ok": true, "result": ...}` or
/// `{"ok": false, "result": {"error": NAME, "error_msg": TEXT}}`.
package struct ResponseEnvelope<Result: Codable & Sendable>: Codable, Sendable {
    package var ok: Bool
    package var result: Result

    package init(ok: Bool, result: Result) {
        self.ok = ok
        self.result = result
    }
}

/// The `result` of a failed request.
package struct ErrorResult: Codable, Sendable, Equatable {
    package var error: String
    package var errorMessage: String

    package init(error: String, errorMessage: String) {
        self.error = error
        self.errorMessage = errorMessage
    }

    enum CodingKeys: String, CodingKey {
        case error
        case errorMessage = "error_msg"
    }
}
