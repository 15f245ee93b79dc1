// SecretFile: the one way a secret is read from disk (pseudonymisation key, database password, S3
// credentials, TLS client key). A file that others could read is refused, so that a key mounted with
// the wrong mode stops the start instead of leaking quietly. The rule is libpq's for `sslkey`, plus an
// owner check: owned by the running user with mode 0600 or stricter, or owned by root with mode 0640 or
// stricter (a Kubernetes Secret volume with `fsGroup`, a file provisioned by an administrator).
import CodedErrors
#if canImport(Glibc)
import Glibc
private let systemRead = Glibc.read
#elseif canImport(Darwin)
import Darwin
private let systemRead = Darwin.read
#endif

/// Why a secret file was refused. The text names the setting and the path, never the file's contents.
public struct SecretFileError: CodedError, Hashable {
    /// A machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The file does not exist, is not a regular file, or cannot be opened by the running user.
        public static let unreadable = Code(rawValue: "secret_file_unreadable")
        /// Group or others may read (or write, or execute) the file.
        public static let groupOrOthersAccess = Code(rawValue: "secret_file_group_or_others_access")
        /// The file belongs to another user than the one running the process (and not to root).
        public static let wrongOwner = Code(rawValue: "secret_file_wrong_owner")
        /// The file is larger than any secret this project reads (1 MiB).
        public static let tooLarge = Code(rawValue: "secret_file_too_large")
    }

    /// The reason.
    public let code: Code
    /// The setting that named the file, e.g. `DICOM_ETL_KEY_FILE`.
    public let setting: String
    /// The file's path (a setting's value, not a secret).
    public let path: String
    /// The file's owner and mode, when the file was found.
    public let owner: UInt32?
    public let mode: UInt32?
    /// The user the process runs as.
    public let runningUser: UInt32

    public init(_ code: Code, setting: String, path: String, owner: UInt32? = nil, mode: UInt32? = nil, runningUser: UInt32) {
        self.code = code
        self.setting = setting
        self.path = path
        self.owner = owner
        self.mode = mode
        self.runningUser = runningUser
    }

    public var description: String {
        let file = "secret file \(setting) (\(path))"
        let modeText = mode.map { "mode " + SecretFile.octal($0) } ?? "mode unknown"
        switch code {
        case .groupOrOthersAccess:
            return "\(code): \(file) is accessible to group or others (\(modeText)); only its owner may read it: chmod 600 \(path)"
        case .wrongOwner:
            return "\(code): \(file) is owned by uid \(owner.map(String.init) ?? "?"), not by uid \(runningUser) that runs "
                + "dicom-etl (or root); chown \(runningUser) \(path) && chmod 600 \(path)"
        case .tooLarge:
            return "\(code): \(file) is larger than \(SecretFile.maximumSize) bytes; it is not a secret file"
        default:
            return "\(code): \(file) cannot be read by uid \(runningUser) (missing, not a regular file, or no permission); "
                + "it must be a regular file owned by that user with chmod 600"
        }
    }
}

/// Reads secrets from files that only their owner can read.
public enum SecretFile {
    /// The largest secret file read (keys, passwords, PEM keys are far smaller).
    public static let maximumSize = 1 << 20

    /// Why a file with this owner and mode may not hold a secret for `runningUser`, or nil when it may.
    ///
    /// Accepted: owned by `runningUser` with no group or other permission (0600, 0400); or, when the process
    /// does not run as root, owned by root with at most group read (0640, 0440: a Kubernetes Secret volume
    /// with `fsGroup`, as libpq accepts for `sslkey`). Running as root, only root's own 0600 files pass.
    public static func problem(owner: UInt32, mode: UInt32, runningUser: UInt32) -> SecretFileError.Code? {
        let permissions = mode & 0o7777
        if owner == runningUser {
            return permissions & 0o077 == 0 ? nil : .groupOrOthersAccess
        }
        if owner == 0 {
            return permissions & 0o037 == 0 ? nil : .groupOrOthersAccess
        }
        return .wrongOwner
    }

    /// The file's bytes, after checking its owner and mode on the open file (no race with a swap of the path).
    /// - Parameters:
    ///   - path: the file (symbolic links are followed, as Kubernetes Secret volumes need).
    ///   - setting: what named the file, for the error text (e.g. `DICOM_ETL_KEY_FILE`).
    public static func read(_ path: String, setting: String) throws(SecretFileError) -> [UInt8] {
        let user = UInt32(geteuid())
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { throw SecretFileError(.unreadable, setting: setting, path: path, runningUser: user) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, (UInt32(status.st_mode) & UInt32(S_IFMT)) == UInt32(S_IFREG) else {
            throw SecretFileError(.unreadable, setting: setting, path: path, runningUser: user)
        }
        let owner = UInt32(status.st_uid), mode = UInt32(status.st_mode) & 0o7777
        if let code = problem(owner: owner, mode: mode, runningUser: user) {
            throw SecretFileError(code, setting: setting, path: path, owner: owner, mode: mode, runningUser: user)
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else {
                throw SecretFileError(.unreadable, setting: setting, path: path, owner: owner, mode: mode, runningUser: user)
            }
            if count == 0 { break }
            bytes.append(contentsOf: buffer[0..<count])
            if bytes.count > maximumSize {
                throw SecretFileError(.tooLarge, setting: setting, path: path, owner: owner, mode: mode, runningUser: user)
            }
        }
        return bytes
    }

    /// The file as UTF-8 text without trailing line breaks (a password, an access key).
    public static func readText(_ path: String, setting: String) throws(SecretFileError) -> String {
        var text = String(decoding: try read(path, setting: setting), as: UTF8.self)
        while let last = text.last, last.isNewline { text.removeLast() }
        return text
    }

    static func octal(_ mode: UInt32) -> String {
        let digits = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
