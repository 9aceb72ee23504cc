// libFuzzer target for the event JSON a peer sends on /ws: compiled together
// with the wire-protocol sources (they need only Foundation) by
// Scripts/fuzz.sh. Any input may be rejected; none may trap, whatever
// decodes must survive a re-encode and decode unchanged, and whatever the
// plain-JSON fast path takes, JSONDecoder must read the same way.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func storageEventFuzzer(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    let fast = Array(bytes).withUnsafeBufferPointer(StorageEvent.init(plainJSON:))
    if let fast {
        let slow = try? StorageEvent(decodingWithJSONDecoder: Array(bytes))
        precondition(slow == fast, "the fast path read \(fast), JSONDecoder \(String(describing: slow))")
    }
    guard let event = try? StorageEvent(decoding: bytes) else { return 0 }
    let again = try? StorageEvent(decoding: Array(event.encodedText().utf8))
    precondition(again == event, "re-encoding changed \(event) into \(String(describing: again))")
    return 0
}
