#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The JSON envelope of every HTTP answer: `{"ok": true, "result": ...}` or
/// `{"ok": false, "result": {"error": NAME, "error_msg": TEXT}}`.
public struct ResponseEnvelope<Result: Codable & Sendable>: Codable, Sendable {
    public var ok: Bool
    public var result: Result

    public init(ok: Bool, result: Result) {
        self.ok = ok
        self.result = result
    }
}

/// The `result` of a failed request.
public struct ErrorResult: Codable, Sendable, Equatable {
    public var error: String
    public var errorMessage: String

    public init(error: String, errorMessage: String) {
        self.error = error
        self.errorMessage = errorMessage
    }

    enum CodingKeys: String, CodingKey {
        case error
        case errorMessage = "error_msg"
    }
}
