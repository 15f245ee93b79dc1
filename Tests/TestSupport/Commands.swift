// Running a program to its end from a test, and psql against the test PostgreSQL.
import Foundation

/// What a program left behind: its exit status, standard output (trimmed) and standard error.
public struct CommandResult: Sendable {
    public var status: Int32
    public var output: String
    public var error: String
}

/// Runs `executable` to its end. Standard error goes to a file and standard output through a pipe, so that
/// neither can fill up and stall the other.
public func runCommand(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let errorPath = NSTemporaryDirectory() + "dicom-etl-test-\(UUID().uuidString).err"
    _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: errorPath) }
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle(forWritingAtPath: errorPath)
    try process.run()
    let outputData = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let errorData = FileManager.default.contents(atPath: errorPath) ?? Data()
    return CommandResult(
        status: process.terminationStatus,
        output: String(decoding: outputData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines),
        error: String(decoding: errorData, as: UTF8.self))
}

/// Runs `executable` to its end with standard output and standard error through one pipe, interleaved as a
/// terminal shows them; `environment` replaces the inherited one when given.
public func runInterleaved(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil
) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// psql exited with an error; the message is its standard error.
public struct QueryFailed: Error, CustomStringConvertible {
    public let message: String
    public var description: String { "psql failed: \(message)" }
}

/// Runs one SQL command with psql (`-tA`, quiet, stopping at the first error) and returns its output, trimmed.
public func psql(_ url: String, _ sql: String) throws -> String {
    let result = try runCommand(TestEnvironment.psqlPath, [url, "-q", "-v", "ON_ERROR_STOP=1", "-tAc", sql])
    guard result.status == 0 else { throw QueryFailed(message: result.error) }
    return result.output
}

extension TestEnvironment {
    /// psql of the test PostgreSQL's binaries (DICOM_ETL_TEST_PG_BIN, which scripts/with-services.sh sets), else
    /// Debian's PostgreSQL 15.
    public static var psqlPath: String {
        ((variables["DICOM_ETL_TEST_PG_BIN"] ?? "/usr/lib/postgresql/15/bin") as NSString).appendingPathComponent("psql")
    }
}

/// A test's own failure, with what went wrong (never patient data).
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The regular files under `folder`, at any depth (0 when it does not exist).
public func regularFileCount(under folder: String) -> Int {
    guard let walker = FileManager.default.enumerator(atPath: folder) else { return 0 }
    var count = 0
    while walker.nextObject() != nil {
        if (walker.fileAttributes?[.type] as? FileAttributeType) == .typeRegular { count += 1 }
    }
    return count
}

/// An empty database of its own in the test PostgreSQL that `scripts/with-services.sh` starts
/// (DICOM_ETL_TEST_DATABASE_URL); `drop()` removes it, whoever is still connected.
public struct ScratchDatabase: Sendable {
    /// `<prefix>_<8 hex digits>`.
    public let name: String
    /// The admin URL with this database in its path.
    public let url: String
    private let adminURL: String

    /// Creates the database.
    public init(prefix: String) throws {
        guard let admin = TestEnvironment.databaseAdminURL, var components = URLComponents(string: admin) else {
            throw TestFailure("needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh)")
        }
        name = prefix + "_" + UUID().uuidString.prefix(8).lowercased()
        components.path = "/" + name
        guard let url = components.string else { throw TestFailure("DICOM_ETL_TEST_DATABASE_URL does not parse") }
        self.url = url
        adminURL = admin
        _ = try psql(admin, "CREATE DATABASE \(name)")
    }

    /// Drops the database (a failure is left to the cluster's own end).
    public func drop() {
        _ = try? psql(adminURL, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }
}
