/// The opening handshake's proof (RFC 6455 4.2.2), for both ends: the
/// client checks the daemon's answer with it, the daemon computes it.
package enum WebSocketAccept {
    /// `Sec-WebSocket-Accept` for `key`: base64 of the SHA-1 of the key and the RFC's GUID.
    ///
    /// Not generic: the daemon calls it from another module, where a generic
    /// version ran unspecialized on every upgrade.
    package static func value(forKey key: String) -> String {
        Base64.encoded(SHA1.digest(Array(key.utf8) + Array("258EAFA5-E914-47DA-95CA-C5AB0DC85B11".utf8)))
    }

    /// Whether `key` is a `Sec-WebSocket-Key` at all: the base64 of 16 bytes
    /// (RFC 6455 4.1, 4.2.1), so 22 characters of the alphabet and `==`.
    /// A server must refuse anything else, and aiohttp (the reference's)
    /// does, with 400.
    package static func isValidKey(_ key: some Collection<UInt8>) -> Bool {
        guard key.count == 24 else { return false }
        return key.prefix(22).allSatisfy(Base64.isAlphabetByte) && key.suffix(2).allSatisfy { $0 == UInt8(ascii: "=") }
    }
}

/// SHA-1 (FIPS 180-4), only for `Sec-WebSocket-Accept`: RFC 6455 fixes
/// the hash, and a 60-byte input does not need a crypto library. Both ends
/// hash once per session, so the message schedule and the padded tail live
/// on the stack rather than in arrays.
package enum SHA1 {
    package static func digest(_ message: [UInt8]) -> [UInt8] {
        var state = State()
        message.withUnsafeBytes { bytes in
            var offset = 0
            while bytes.count - offset >= 64 {
                state.compress(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + 64]))
                offset += 64
            }
            // The rest, 0x80, zeros, and the length in bits: one block or two.
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { tail in
                tail.initialize(repeating: 0)
                let rest = bytes.count - offset
                for index in 0..<rest { tail[index] = bytes[offset + index] }
                tail[rest] = 0x80
                let tailLength = rest + 1 + 8 <= 64 ? 64 : 128
                let bitLength = UInt64(bytes.count) * 8
                for index in 0..<8 { tail[tailLength - 1 - index] = UInt8(truncatingIfNeeded: bitLength >> UInt64(index * 8)) }
                let raw = UnsafeRawBufferPointer(tail)
                state.compress(UnsafeRawBufferPointer(rebasing: raw[0..<64]))
                if tailLength == 128 { state.compress(UnsafeRawBufferPointer(rebasing: raw[64..<128])) }
            }
        }
        var digest: [UInt8] = []
        digest.reserveCapacity(20)
        for word in [state.h.0, state.h.1, state.h.2, state.h.3, state.h.4] {
            for shift in stride(from: 24, through: 0, by: -8) { digest.append(UInt8(truncatingIfNeeded: word >> UInt32(shift))) }
        }
        return digest
    }

    private struct State {
        var h: (UInt32, UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0)

        /// Folds one 64-byte block into the state.
        mutating func compress(_ block: UnsafeRawBufferPointer) {
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 80) { w in
                for i in 0..<16 {
                    let j = i * 4
                    w[i] = UInt32(block[j]) << 24 | UInt32(block[j + 1]) << 16 | UInt32(block[j + 2]) << 8 | UInt32(block[j + 3])
                }
                for i in 16..<80 {
                    let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
                    w[i] = x << 1 | x >> 31
                }
                var (a, b, c, d, e) = h
                for i in 0..<80 {
                    let (f, k): (UInt32, UInt32) = switch i {
                    case 0..<20: ((b & c) | (~b & d), 0x5A82_7999)
                    case 20..<40: (b ^ c ^ d, 0x6ED9_EBA1)
                    case 40..<60: ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC)
                    default: (b ^ c ^ d, 0xCA62_C1D6)
                    }
                    let temp = (a << 5 | a >> 27) &+ f &+ e &+ k &+ w[i]
                    e = d
                    d = c
                    c = b << 30 | b >> 2
                    b = a
                    a = temp
                }
                h = (h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d, h.4 &+ e)
            }
        }
    }
}
