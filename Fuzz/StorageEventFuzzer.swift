// libFuzzer target for the event JSON a peer sends on /ws: compiled together
// with the wire-protocol sources (they need only Foundation) by
// Scripts/fuzz.sh. Any input may be rejected; none may trap, and whatever
// decodes must survive a re-encode and decode unchanged.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func storageEventFuzzer(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    guard let event = try? StorageEvent(decoding: bytes) else { return 0 }
    let again = try? StorageEvent(decoding: Array(event.encodedText().utf8))
    precondition(again == event, "re-encoding changed \(event) into \(String(describing: again))")
    return 0
}
