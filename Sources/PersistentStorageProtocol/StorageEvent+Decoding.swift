#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension StorageEvent {
    /// The whole frame in one pass: `event` is read only for `storage`, so
    /// other types may carry anything there, or nothing.
    private struct Frame: Decodable {
        var eventType: String
        var status: Result<StorageStatus, StorageEventDecodingError>?

        enum CodingKeys: String, CodingKey {
            case eventType = "event_type"
            case event
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            eventType = try container.decode(String.self, forKey: .eventType)
            guard StorageEvent.storageEventTypes.contains(eventType) else { return }
            do {
                status = .success(try container.decode(StorageStatus.self, forKey: .event))
            } catch {
                status = .failure(StorageEventDecodingError(reason: "a storage event without clients, data.path and data.write_allowed"))
            }
        }
    }

    /// Shared by every frame: decoding with one `JSONDecoder` is safe from any thread.
    private static let decoder = JSONDecoder()

    /// Decodes one frame's bytes.
    package init(decoding bytes: some Collection<UInt8>) throws(StorageEventDecodingError) {
        let array = Array(bytes)
        if let event = array.withUnsafeBufferPointer(StorageEvent.init(plainJSON:)) {
            self = event
        } else {
            try self.init(decodingWithJSONDecoder: array)
        }
    }

    /// Decodes with `JSONDecoder`: any valid JSON, with its error messages.
    init(decodingWithJSONDecoder bytes: [UInt8]) throws(StorageEventDecodingError) {
        let frame: Frame
        do {
            frame = try Self.decoder.decode(Frame.self, from: Data(bytes))
        } catch {
            throw StorageEventDecodingError(reason: "not a JSON object with a string \"event_type\"")
        }
        switch frame.eventType {
        case "loop": self = .loop
        case "ping": self = .ping
        case "pong": self = .pong
        case "storage", "storage_state":
            switch frame.status {
            case .success(let status)?: self = .storage(status)
            case .failure(let error)?: throw error
            case nil: throw StorageEventDecodingError(reason: "a storage event without clients, data.path and data.write_allowed")
            }
        default: self = .unknown(type: frame.eventType)
        }
    }
}
