// The sandbox wire: length-prefixed frames over a pipe, little endian.
//   parent → child  u32 length | u16 kind length | kind | u32 count | (u32 length | payload) × count
//   child → parent  u32 length | u8 status (0 ok, 1 failed) | u32 index | body   — one per job, as each ends
// The child answers the jobs of a request in order; the index lets the parent check it.
#if canImport(Glibc)
import Glibc
#endif

enum Framing {
    /// Frames larger than this are a protocol error (a job's answer is metadata and paths, never pixels).
    static let maximumFrame = 256 << 20

    static func request(kind: String, payloads: [[UInt8]]) -> [UInt8] {
        let kindBytes = Array(kind.utf8)
        var body: [UInt8] = []
        body.reserveCapacity(6 + kindBytes.count + payloads.reduce(0) { $0 + 4 + $1.count })
        append(UInt16(kindBytes.count), to: &body)
        body += kindBytes
        append(UInt32(payloads.count), to: &body)
        for payload in payloads {
            append(UInt32(payload.count), to: &body)
            body += payload
        }
        var frame: [UInt8] = []
        frame.reserveCapacity(4 + body.count)
        append(UInt32(body.count), to: &frame)
        return frame + body
    }

    /// The kind and payloads of a request body, or nil when it is malformed.
    static func parseRequest(_ body: [UInt8]) -> (kind: String, payloads: [[UInt8]])? {
        var offset = 0
        guard let kindLength = read(UInt16.self, body, &offset), offset + Int(kindLength) <= body.count else { return nil }
        let kind = String(decoding: body[offset..<(offset + Int(kindLength))], as: UTF8.self)
        offset += Int(kindLength)
        guard let count = read(UInt32.self, body, &offset) else { return nil }
        var payloads: [[UInt8]] = []
        payloads.reserveCapacity(Int(min(count, 4096)))
        for _ in 0..<count {
            guard let length = read(UInt32.self, body, &offset), offset + Int(length) <= body.count else { return nil }
            payloads.append(Array(body[offset..<(offset + Int(length))]))
            offset += Int(length)
        }
        return offset == body.count ? (kind, payloads) : nil
    }

    static func response(index: Int, ok: Bool, body: [UInt8]) -> [UInt8] {
        var frame: [UInt8] = []
        frame.reserveCapacity(9 + body.count)
        append(UInt32(5 + body.count), to: &frame)
        frame.append(ok ? 0 : 1)
        append(UInt32(index), to: &frame)
        return frame + body
    }

    static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    static func read<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], _ offset: inout Int) -> T? {
        let size = MemoryLayout<T>.size
        guard offset + size <= bytes.count else { return nil }
        var value: T = 0
        for i in 0..<size { value |= T(bytes[offset + i]) << (8 * i) }
        offset += size
        return value
    }
}

/// Writes every byte to a pipe or file (retrying on EINTR); false when it is closed or broken, or on an error.
public func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    guard fd >= 0 else { return false }
    return bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }
}

/// Reads exactly `count` bytes (blocking); nil at end of input or on error.
func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
    guard fd >= 0 else { return nil }
    var bytes = [UInt8](repeating: 0, count: count)
    var offset = 0
    let ok = bytes.withUnsafeMutableBytes { buffer -> Bool in
        while offset < count {
            let got = read(fd, buffer.baseAddress! + offset, count - offset)
            if got < 0 {
                if errno == EINTR { continue }
                return false
            }
            if got == 0 { return false }
            offset += got
        }
        return true
    }
    return ok ? bytes : nil
}

/// Buffered reads from a child's output with a deadline (poll), for the parent's I/O thread.
struct DeadlineReader {
    enum Outcome { case bytes([UInt8]), endOfInput, timedOut }

    let fd: Int32
    private var buffer: [UInt8] = []
    private var start = 0

    init(fd: Int32) {
        self.fd = fd
        buffer.reserveCapacity(64 * 1024)
    }

    /// `count` bytes, or why not: the child closed its output (or the read failed), or `deadline` passed.
    mutating func read(_ count: Int, deadline: ContinuousClock.Instant) -> Outcome {
        while buffer.count - start < count {
            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero { return .timedOut }
            let milliseconds = Int32(clamping: remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000 + 1)
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, milliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                return .endOfInput
            }
            if ready == 0 { continue }
            if start > 0 && start == buffer.count {
                buffer.removeAll(keepingCapacity: true)
                start = 0
            }
            let wanted = max(64 * 1024, count - (buffer.count - start))
            let oldCount = buffer.count
            buffer.append(contentsOf: repeatElement(0, count: wanted))
            let got = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + oldCount, wanted) }
            if got < 0 {
                buffer.removeLast(wanted)
                if errno == EINTR || errno == EAGAIN { continue }
                return .endOfInput
            }
            buffer.removeLast(wanted - got)
            if got == 0 { return .endOfInput }
        }
        let bytes = Array(buffer[start..<(start + count)])
        start += count
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        return .bytes(bytes)
    }
}
