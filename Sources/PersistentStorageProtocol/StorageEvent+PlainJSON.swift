extension StorageEvent {
    /// The events daemons actually send, read in one pass without
    /// `JSONDecoder` (a tenth of a client's CPU per session, Documentation/Benchmarks.md).
    /// It takes only plain JSON: the keys
    /// `event_type` and `event` once each, `event` empty or a status with
    /// exactly `clients` (digits), `data.path` (a string without escapes)
    /// and `data.write_allowed`, in any order and with any whitespace. For
    /// anything else (escapes, other keys, other values) it returns nil and
    /// `JSONDecoder` decides, so both always agree; the fuzzer checks that.
    init?(plainJSON bytes: UnsafeBufferPointer<UInt8>) {
        var scanner = PlainJSONScanner(bytes: bytes)
        var eventType: String?
        var status: StorageStatus?
        var sawEvent = false
        let members = scanner.object { key, scanner in
            switch key {
            case "event_type" where eventType == nil:
                eventType = scanner.string()
                return eventType != nil
            case "event" where !sawEvent:
                sawEvent = true
                if scanner.emptyObject() { return true }
                status = scanner.status()
                return status != nil
            default:
                return false
            }
        }
        guard members, scanner.atEnd, let eventType else { return nil }
        switch eventType {
        case "loop": self = .loop
        case "ping": self = .ping
        case "pong": self = .pong
        case "storage", "storage_state":
            guard let status else { return nil }
            self = .storage(status)
        default: self = .unknown(type: eventType)
        }
    }
}

/// The scanner behind ``StorageEvent/init(plainJSON:)``: every method
/// returns nil or false for what it does not take, and the caller gives up.
private struct PlainJSONScanner {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
        skipWhitespace()
    }

    var atEnd: Bool { index == bytes.count }

    mutating func skipWhitespace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
            index += 1
        }
    }

    mutating func take(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        skipWhitespace()
        return true
    }

    /// `{ "key": value, ... }`, at least one member; `member` reads each value.
    mutating func object(_ member: (String, inout PlainJSONScanner) -> Bool) -> Bool {
        guard take(UInt8(ascii: "{")) else { return false }
        repeat {
            guard let key = string(), take(UInt8(ascii: ":")), member(key, &self) else { return false }
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "}"))
    }

    mutating func emptyObject() -> Bool {
        let start = index
        if take(UInt8(ascii: "{")) && take(UInt8(ascii: "}")) { return true }
        index = start
        return false
    }

    /// A string without escapes or control characters, in valid UTF-8.
    mutating func string() -> String? {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        let start = index + 1
        var end = start
        while end < bytes.count, bytes[end] != UInt8(ascii: "\"") {
            guard bytes[end] >= 0x20, bytes[end] != UInt8(ascii: "\\") else { return nil }
            end += 1
        }
        guard end < bytes.count, let text = String(validating: bytes[start..<end], as: UTF8.self) else { return nil }
        index = end + 1
        skipWhitespace()
        return text
    }

    /// Digits only, without a leading zero, small enough for any `Int`.
    mutating func count() -> Int? {
        var end = index
        while end < bytes.count, bytes[end] >= UInt8(ascii: "0"), bytes[end] <= UInt8(ascii: "9") { end += 1 }
        let digits = end - index
        guard digits >= 1, digits <= 18, digits == 1 || bytes[index] != UInt8(ascii: "0") else { return nil }
        var value = 0
        for position in index..<end { value = value * 10 + Int(bytes[position] - UInt8(ascii: "0")) }
        index = end
        skipWhitespace()
        return value
    }

    mutating func boolean() -> Bool? {
        for (word, value) in [("true", true), ("false", false)] {
            let utf8 = Array(word.utf8)
            if bytes.count - index >= utf8.count && bytes[index..<index + utf8.count].elementsEqual(utf8) {
                index += utf8.count
                skipWhitespace()
                return value
            }
        }
        return nil
    }

    /// `{"clients": N, "data": {"path": "...", "write_allowed": BOOL}}`, each key once.
    mutating func status() -> StorageStatus? {
        var clients: Int?
        var path: String?
        var writeAllowed: Bool?
        var sawData = false
        let complete = object { key, scanner in
            switch key {
            case "clients" where clients == nil:
                clients = scanner.count()
                return clients != nil
            case "data" where !sawData:
                sawData = true
                return scanner.object { key, scanner in
                    switch key {
                    case "path" where path == nil:
                        path = scanner.string()
                        return path != nil
                    case "write_allowed" where writeAllowed == nil:
                        writeAllowed = scanner.boolean()
                        return writeAllowed != nil
                    default:
                        return false
                    }
                }
            default:
                return false
            }
        }
        guard complete, let clients, let path, let writeAllowed else { return nil }
        return StorageStatus(clients: clients, data: .init(path: path, writeAllowed: writeAllowed))
    }
}
