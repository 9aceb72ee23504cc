import CLibMount
import Glibc

/// A libmount table (fstab or mountinfo), freed when released.
final class LibMountTable {
    let handle: OpaquePointer

    init() {
        guard let table = mnt_new_table() else { fatalError("libmount: out of memory") }
        handle = table
    }

    deinit { mnt_unref_table(handle) }

    /// Every entry in table order.
    var entries: [OpaquePointer] {
        guard let iterator = mnt_new_iter(Int32(MNT_ITER_FORWARD)) else { return [] }
        defer { mnt_free_iter(iterator) }
        var result: [OpaquePointer] = []
        var fs: OpaquePointer?
        while mnt_table_next_fs(handle, iterator, &fs) == 0, let entry = fs {
            result.append(entry)
        }
        return result
    }
}

/// A C string from libmount, or nil.
func libmountString(_ pointer: UnsafePointer<CChar>?) -> String? {
    pointer.map { String(cString: $0) }
}

/// The value of `name` in a libmount option string: nil when absent, "" when
/// present without a value.
func optionValue(_ name: String, in options: String) -> String? {
    var value: UnsafeMutablePointer<CChar>?
    var size: Int = 0
    let found = options.withCString { optstr in
        name.withCString { mnt_optstr_get_option(optstr, $0, &value, &size) }
    }
    guard found == 0 else { return nil }
    guard let value, size > 0 else { return "" }
    return value.withMemoryRebound(to: UInt8.self, capacity: size) {
        String(decoding: UnsafeBufferPointer(start: $0, count: size), as: UTF8.self)
    }
}
