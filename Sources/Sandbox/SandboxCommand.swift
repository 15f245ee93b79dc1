// How a sandbox child is started: an executable (normally this process's own, with a hidden subcommand),
// its arguments and environment additions.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// How to start a sandbox child.
public struct SandboxCommand: Sendable, Hashable {
    /// Path of the executable.
    public var executable: String
    /// Arguments after the executable's name.
    public var arguments: [String]
    /// Variables added to (or replacing in) the parent's environment.
    public var environment: [String: String]

    public init(executable: String, arguments: [String], environment: [String: String] = defaultEnvironment) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
    }

    /// Environment every child gets unless overridden: no Swift crash backtracer (a crash is expected
    /// and reported by the pool; symbolicating it would only delay the respawn).
    public static let defaultEnvironment = ["SWIFT_BACKTRACE": "enable=no"]

    /// Whether the child may see a variable of the parent's environment. The children parse untrusted files:
    /// they get none of the credentials the daemon holds (the database's URL and password, object store
    /// keys, TLS material), nor where those are kept, so code run in a child cannot reach them.
    public static func inherits(_ name: String) -> Bool {
        if withheldVariables.contains(name) { return false }
        return !withheldPrefixes.contains { name.hasPrefix($0) }
    }

    /// Variables never passed to a child.
    public static let withheldVariables: Set<String> = [
        "DICOM_ETL_DATABASE_URL", "DICOM_ETL_DATABASE_PASSWORD", "DICOM_ETL_DATABASE_PASSWORD_FILE", "DATABASE_URL",
        "DICOM_ETL_KEY", "DICOM_ETL_SPLIT_KEY", "DICOM_ETL_STORAGE_URL",
    ]
    /// Prefixes of variables never passed to a child (PostgreSQL's `PG*`, the AWS SDKs' `AWS_*`).
    public static let withheldPrefixes = ["PG", "AWS_"]

    /// This process's own executable (`/proc/self/exe`) with `arguments`, e.g. `["sandbox-worker"]`.
    public static func currentExecutable(arguments: [String], environment: [String: String] = defaultEnvironment) -> SandboxCommand {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let path = count > 0 ? String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
        return SandboxCommand(executable: path, arguments: arguments, environment: environment)
    }
}
