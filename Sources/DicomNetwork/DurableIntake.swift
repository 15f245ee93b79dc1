// Durable intake of instances received over the network (C-STORE, STOW-RS): each instance is written as a
// Part-10 file under a hidden temporary name in `<drop>/network/` (names starting with '.' are never taken
// by the watcher), fsync'd, renamed to `<uuid>.dcm` and the folder fsync'd; only then may the sender be told
// Success. The data set is never parsed here: the file meta header is built from the command set's UIDs and
// the negotiated transfer syntax, and all parsing is left to the pipeline's sandbox children.
import CodedErrors
import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Where a received instance came from: recorded in the ledger, never logged.
public struct ReceivedSource: Sendable, Hashable {
    /// The received file's name in `<drop>/network/` (`<uuid>.dcm`).
    public var fileName: String
    /// `dimse` or `stow`.
    public var transport: String
    /// The calling AE title (DIMSE) or the token's name (STOW-RS).
    public var sender: String
    /// The peer's IP address.
    public var peerAddress: String

    public init(fileName: String, transport: String, sender: String, peerAddress: String) {
        self.fileName = fileName
        self.transport = transport
        self.sender = sender
        self.peerAddress = peerAddress
    }
}

/// Why an instance could not be taken in.
public struct IntakeError: CodedError, Hashable {
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public static let unavailable = Code(rawValue: "unavailable")
        public static let diskShort = Code(rawValue: "disk_short")
        public static let writeFailed = Code(rawValue: "write_failed")
        public static let sourceNotRecorded = Code(rawValue: "source_not_recorded")
    }
    /// The machine-readable code.
    public let code: Code
    private init(_ code: Code) { self.code = code }
    public var description: String { "intake: \(code.rawValue)" }
    /// The pipeline reports an outage (database or store unreachable).
    public static let unavailable = IntakeError(.unavailable)
    /// Free space under the drop folder is below the configured floor.
    public static let diskShort = IntakeError(.diskShort)
    /// Writing, syncing or renaming the file failed.
    public static let writeFailed = IntakeError(.writeFailed)
    /// The ledger did not take the instance's source.
    public static let sourceNotRecorded = IntakeError(.sourceNotRecorded)
    /// True when the sender should retry later (Out of Resources, 503).
    public var isTransient: Bool { true }
}

/// The drop folder's network intake. Thread-safe; file I/O runs on NIO's blocking thread pool.
public final class DurableIntake: Sendable {
    /// Name of the drop folder's subfolder received instances go to.
    public static let folderName = "network"
    /// `<drop>/network`.
    public let folder: String
    /// The drop folder (where free space is measured).
    public let dropFolder: String
    /// Below this many free bytes under the drop folder, instances are refused.
    public let minimumFreeBytes: UInt64
    private let isAvailable: @Sendable () -> Bool
    private let recordSource: (@Sendable (ReceivedSource) async throws -> Void)?
    private let threadPool: NIOThreadPool

    /// - Parameters:
    ///   - dropFolder: the drop folder's root.
    ///   - minimumFreeBytes: the disk floor (0: none).
    ///   - isAvailable: false while the pipeline reports an outage.
    ///   - recordSource: writes the source of a received file to the ledger before the file is renamed in.
    public init(
        dropFolder: String, minimumFreeBytes: UInt64, isAvailable: @escaping @Sendable () -> Bool = { true },
        recordSource: (@Sendable (ReceivedSource) async throws -> Void)? = nil, threadPool: NIOThreadPool = .singleton
    ) {
        var root = dropFolder
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        folder = root + "/" + Self.folderName
        self.dropFolder = root
        self.minimumFreeBytes = minimumFreeBytes
        self.isAvailable = isAvailable
        self.recordSource = recordSource
        self.threadPool = threadPool
    }

    /// Removes temporaries a crash left behind (never acknowledged). The folder itself is made by the first
    /// instance received, so a drop folder that never receives over the network gets no extra folder.
    /// - Returns: how many temporaries were removed.
    @discardableResult
    public func prepare() throws -> Int {
        guard FileManager.default.fileExists(atPath: folder) else { return 0 }
        var removed = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: folder) where name.hasPrefix(".") && name.hasSuffix(".part") {
            if unlink(folder + "/" + name) == 0 { removed += 1 }
        }
        return removed
    }

    /// Creates the temporary file (and the folder, the first time).
    private static func create(_ temporary: String, folder: String) throws -> Int32 {
        var fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        if fd < 0 && errno == ENOENT {
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        }
        guard fd >= 0 else { throw IntakeError.writeFailed }
        return fd
    }

    /// Nil when a new instance may be taken, else why not (outage, disk below the floor).
    public func refusal() -> IntakeError? {
        if !isAvailable() { return .unavailable }
        if minimumFreeBytes > 0 {
            var info = statvfs()
            if statvfs(dropFolder, &info) == 0 && UInt64(info.f_bavail) * UInt64(info.f_frsize) < minimumFreeBytes { return .diskShort }
        }
        return nil
    }

    /// Opens a temporary file and writes the Part-10 preamble and file meta header.
    public func begin(sopClassUID: String, sopInstanceUID: String, transferSyntaxUID: String, sourceAETitle: String?) async throws -> IncomingInstance {
        let name = UUID().uuidString.lowercased()
        let temporary = "\(folder)/.\(name).dcm.part"
        let header = Self.fileMetaHeader(
            sopClassUID: sopClassUID, sopInstanceUID: sopInstanceUID, transferSyntaxUID: transferSyntaxUID, sourceAETitle: sourceAETitle)
        let folder = self.folder
        let fd = try await threadPool.runIfActive { () throws -> Int32 in
            let fd = try Self.create(temporary, folder: folder)
            do { try Self.writeAll(fd, header) } catch {
                close(fd)
                unlink(temporary)
                throw error
            }
            return fd
        }
        return IncomingInstance(fd: fd, name: name, temporaryPath: temporary, finalPath: "\(folder)/\(name).dcm", intake: self)
    }

    /// Writes a complete Part-10 file as received (STOW-RS) and makes it durable.
    /// - Returns: the file's name in `<drop>/network/`.
    public func store(part10 bytes: ByteBuffer, source: (String) -> ReceivedSource) async throws -> String {
        let name = UUID().uuidString.lowercased()
        let temporary = "\(folder)/.\(name).dcm.part"
        let folder = self.folder
        let fd = try await threadPool.runIfActive { () throws -> Int32 in
            let fd = try Self.create(temporary, folder: folder)
            do { try Self.writeAll(fd, bytes) } catch {
                close(fd)
                unlink(temporary)
                throw error
            }
            return fd
        }
        let instance = IncomingInstance(fd: fd, name: name, temporaryPath: temporary, finalPath: "\(folder)/\(name).dcm", intake: self)
        try await instance.commit(source: source(instance.fileName))
        return instance.fileName
    }

    fileprivate func write(_ fd: Int32, _ bytes: ByteBuffer) async throws {
        try await threadPool.runIfActive { try Self.writeAll(fd, bytes) }
    }

    /// fsync the file, record its source, rename it into place and fsync the folder.
    fileprivate func commit(_ instance: IncomingInstance, source: ReceivedSource?) async throws {
        try await threadPool.runIfActive {
            let synced = fsync(instance.fd) == 0
            close(instance.fd)
            guard synced else { throw IntakeError.writeFailed }
        }
        if let source, let recordSource {
            do { try await recordSource(source) } catch { throw IntakeError.sourceNotRecorded }
        }
        let folder = self.folder
        try await threadPool.runIfActive {
            guard rename(instance.temporaryPath, instance.finalPath) == 0 else { throw IntakeError.writeFailed }
            let directory = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard directory >= 0 else { throw IntakeError.writeFailed }
            defer { close(directory) }
            guard fsync(directory) == 0 else { throw IntakeError.writeFailed }
        }
    }

    fileprivate func discard(_ instance: IncomingInstance, closed: Bool) async {
        _ = try? await threadPool.runIfActive {
            if !closed { close(instance.fd) }
            unlink(instance.temporaryPath)
        }
    }

    private static func writeAll(_ fd: Int32, _ buffer: ByteBuffer) throws {
        try buffer.withUnsafeReadableBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw IntakeError.writeFailed
                }
                offset += written
            }
        }
    }

    /// 128-byte preamble, `DICM`, and group 0002 in explicit VR little endian.
    static func fileMetaHeader(sopClassUID: String, sopInstanceUID: String, transferSyntaxUID: String, sourceAETitle: String?) -> ByteBuffer {
        var group = ByteBuffer()
        func element(_ number: UInt16, _ vr: String, _ value: [UInt8]) {
            group.writeInteger(UInt16(0x0002), endianness: .little)
            group.writeInteger(number, endianness: .little)
            group.writeString(vr)
            if vr == "OB" {
                group.writeInteger(UInt16(0), endianness: .little)
                group.writeInteger(UInt32(value.count), endianness: .little)
            } else {
                group.writeInteger(UInt16(value.count), endianness: .little)
            }
            group.writeBytes(value)
        }
        func padded(_ text: String, with pad: UInt8) -> [UInt8] {
            var bytes = Array(text.utf8)
            if bytes.count % 2 == 1 { bytes.append(pad) }
            return bytes
        }
        element(0x0001, "OB", [0x00, 0x01])
        element(0x0002, "UI", padded(sopClassUID, with: 0))
        element(0x0003, "UI", padded(sopInstanceUID, with: 0))
        element(0x0010, "UI", padded(transferSyntaxUID, with: 0))
        element(0x0012, "UI", padded(OutgoingPDU.implementationClassUID, with: 0))
        element(0x0013, "SH", padded(OutgoingPDU.implementationVersion, with: 0x20))
        if let sourceAETitle, !sourceAETitle.isEmpty { element(0x0016, "AE", padded(sourceAETitle, with: 0x20)) }
        var file = ByteBuffer()
        file.writeRepeatingByte(0, count: 128)
        file.writeString("DICM")
        file.writeInteger(UInt16(0x0002), endianness: .little)
        file.writeInteger(UInt16(0x0000), endianness: .little)
        file.writeString("UL")
        file.writeInteger(UInt16(4), endianness: .little)
        file.writeInteger(UInt32(group.readableBytes), endianness: .little)
        file.writeImmutableBuffer(group)
        return file
    }
}

/// An instance being received: append its data set's bytes, then `commit` (durable) or `discard`.
public struct IncomingInstance: Sendable {
    fileprivate let fd: Int32
    /// The UUID the file is named after.
    public let name: String
    fileprivate let temporaryPath: String
    fileprivate let finalPath: String
    fileprivate let intake: DurableIntake

    /// The file's final name in `<drop>/network/`.
    public var fileName: String { "\(name).dcm" }

    /// Appends data set bytes.
    public func append(_ bytes: ByteBuffer) async throws {
        try await intake.write(fd, bytes)
    }

    /// Makes the instance durable and visible to the watcher; the temporary is removed if this fails.
    public func commit(source: ReceivedSource?) async throws {
        do {
            try await intake.commit(self, source: source)
        } catch {
            await intake.discard(self, closed: true)
            throw error
        }
    }

    /// Removes the temporary (the instance was not completed).
    public func discard() async {
        await intake.discard(self, closed: false)
    }
}
