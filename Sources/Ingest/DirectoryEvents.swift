// Directory change notifications: the protocol the watcher consumes and its inotify implementation
// (a dedicated thread reading the inotify descriptor, so no task of the cooperative pool blocks).
import CodedErrors
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Sandbox
import Synchronization

/// A change in a watched directory.
public enum DirectoryEvent: Sendable, Hashable {
    /// A file was closed after writing.
    case fileWritten(path: String)
    /// A file was renamed into a watched directory: it arrived whole.
    case fileMovedIn(path: String)
    /// A file was opened (by anyone): a writer that closed it and opens it again is not done with it.
    case fileOpened(path: String)
    /// A directory was created in, or moved into, a watched directory: scan it, it may already hold files.
    case directoryAppeared(path: String)
    /// Events were lost (kernel queue overflow): rescan everything.
    case overflow
}

/// A source of directory change events. Watches are not recursive: the watcher adds one per directory.
public protocol DirectoryEventSource: AnyObject, Sendable {
    /// Starts watching `directory` (idempotent). Returns false when no watch could be added (limits reached).
    @discardableResult func watch(directory: String) -> Bool
    /// The events; a single consumer. Ends after `stop()`.
    var events: AsyncStream<DirectoryEvent> { get }
    /// Stops reading and releases the watches.
    func stop()
}

/// Why the inotify source could not start.
public struct WatcherError: CodedError, Hashable {
    /// Machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// `inotify_init1` failed (the user's inotify instances are used up, most often).
        public static let inotifyInitFailed = Code(rawValue: "inotify_init_failed")
    }

    public let code: Code
    /// errno of the failed call.
    public let errorNumber: Int32

    public init(_ code: Code, errorNumber: Int32) {
        self.code = code
        self.errorNumber = errorNumber
    }

    public var description: String { "watcher error: \(code.rawValue) (errno \(errorNumber))" }
}

/// inotify on Linux: IN_CLOSE_WRITE, IN_MOVED_TO and IN_OPEN for files, IN_CREATE/IN_MOVED_TO for directories,
/// IN_Q_OVERFLOW as `.overflow`. A dedicated thread polls the descriptor and feeds a bounded stream;
/// when the stream is full, events are dropped and an `.overflow` follows, as the kernel does.
public final class InotifyEventSource: DirectoryEventSource, Sendable {
    // <sys/inotify.h>; IN_ALL_EVENTS and friends are not all imported into Swift.
    static let closeWrite: UInt32 = 0x0000_0008
    static let opened: UInt32 = 0x0000_0020
    static let movedFrom: UInt32 = 0x0000_0040
    static let movedTo: UInt32 = 0x0000_0080
    static let create: UInt32 = 0x0000_0100
    static let deleteSelf: UInt32 = 0x0000_0400
    static let moveSelf: UInt32 = 0x0000_0800
    static let queueOverflow: UInt32 = 0x0000_4000
    static let ignored: UInt32 = 0x0000_8000
    static let onlyDirectory: UInt32 = 0x0100_0000
    static let isDirectory: UInt32 = 0x4000_0000

    public let events: AsyncStream<DirectoryEvent>
    private let continuation: AsyncStream<DirectoryEvent>.Continuation
    private let descriptor: Int32
    /// The watched directories both ways, and whether `stop()` was called; behind one lock.
    private struct Watches {
        var pathByWatch: [Int32: String] = [:]
        var watchByPath: [String: Int32] = [:]
        var stopped = false
    }
    private let watches = Mutex(Watches())

    /// Opens an inotify instance and starts its reading thread.
    /// - Parameter bufferLimit: events held for a slow consumer before they are dropped (then `.overflow`).
    public init(bufferLimit: Int = 65_536) throws(WatcherError) {
        let fd = inotify_init1(Int32(O_CLOEXEC | O_NONBLOCK))
        guard fd >= 0 else { throw WatcherError(.inotifyInitFailed, errorNumber: errno) }
        descriptor = fd
        (events, continuation) = AsyncStream.makeStream(of: DirectoryEvent.self, bufferingPolicy: .bufferingOldest(bufferLimit))
        let thread = Thread { [self] in readLoop() }
        thread.name = "inotify"
        thread.start()
    }

    deinit {
        stop()
    }

    @discardableResult
    public func watch(directory: String) -> Bool {
        let mask = Self.closeWrite | Self.movedTo | Self.opened | Self.create | Self.deleteSelf | Self.moveSelf | Self.onlyDirectory
        return watches.withLock { watches in
            if watches.stopped { return false }
            let wd = inotify_add_watch(descriptor, directory, mask)
            guard wd >= 0 else { return false }
            if let old = watches.pathByWatch[wd], old != directory { watches.watchByPath[old] = nil }
            watches.pathByWatch[wd] = directory
            watches.watchByPath[directory] = wd
            return true
        }
    }

    /// Number of directories watched.
    public var watchCount: Int { watches.withLock { $0.pathByWatch.count } }

    public func stop() {
        watches.withLock { $0.stopped = true }
    }

    private func readLoop() {
        let bufferSize = 64 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 8)
        defer {
            buffer.deallocate()
            close(descriptor)
            continuation.finish()
        }
        var lost = false
        while !watches.withLock({ $0.stopped }) {
            var pollDescriptor = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pollDescriptor, 1, 200)
            if ready <= 0 { continue }
            let count = read(descriptor, buffer, bufferSize)
            if count <= 0 { continue }
            var offset = 0
            var batch: [DirectoryEvent] = []
            while offset + 16 <= count {
                let wd = buffer.load(fromByteOffset: offset, as: Int32.self)
                let mask = buffer.load(fromByteOffset: offset + 4, as: UInt32.self)
                let nameLength = Int(buffer.load(fromByteOffset: offset + 12, as: UInt32.self))
                var name = ""
                if nameLength > 0 {
                    let start = (buffer + offset + 16).assumingMemoryBound(to: UInt8.self)
                    let bytes = UnsafeBufferPointer(start: start, count: nameLength)
                    let end = bytes.firstIndex(of: 0) ?? nameLength
                    name = String(decoding: bytes[..<end], as: UTF8.self)
                }
                offset += 16 + nameLength
                if let event = translate(wd: wd, mask: mask, name: name) { batch.append(event) }
            }
            for event in batch {
                if lost {
                    if case .enqueued = continuation.yield(.overflow) { lost = false } else { break }
                }
                if case .dropped = continuation.yield(event) { lost = true }
            }
        }
    }

    private func translate(wd: Int32, mask: UInt32, name: String) -> DirectoryEvent? {
        if mask & Self.queueOverflow != 0 { return .overflow }
        return watches.withLock { watches -> DirectoryEvent? in
            if mask & Self.ignored != 0 {
                if let path = watches.pathByWatch.removeValue(forKey: wd), watches.watchByPath[path] == wd { watches.watchByPath[path] = nil }
                return nil
            }
            guard let directory = watches.pathByWatch[wd] else { return nil }
            if mask & (Self.moveSelf | Self.deleteSelf) != 0 {
                // The directory went away or elsewhere; its new place (if inside the tree) arrives as
                // directoryAppeared on the parent and gets a fresh watch.
                if mask & Self.moveSelf != 0 { inotify_rm_watch(descriptor, wd) }
                return nil
            }
            guard !name.isEmpty else { return nil }
            let path = directory == "/" ? "/" + name : directory + "/" + name
            if mask & Self.isDirectory != 0 {
                return mask & (Self.create | Self.movedTo) != 0 ? .directoryAppeared(path: path) : nil
            }
            if mask & Self.closeWrite != 0 { return .fileWritten(path: path) }
            if mask & Self.movedTo != 0 { return .fileMovedIn(path: path) }
            if mask & Self.opened != 0 { return .fileOpened(path: path) }
            return nil
        }
    }
}
