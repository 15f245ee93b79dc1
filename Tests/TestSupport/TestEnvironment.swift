// TestSupport: what every test target needs to find its world — the package, the test interpreter, the DICOM
// corpus and a free port — in one place, with no absolute path: the corpus is DICOM_ETL_CORPUS (make test sets
// it), else ../shared/data/dicom beside the clone, else the test files of pydicom's wheel in the test venv.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum TestEnvironment {
    public static let variables = ProcessInfo.processInfo.environment

    /// The package's root folder (this file is `Tests/TestSupport/TestEnvironment.swift`).
    public static let packageRoot: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    /// DICOM_ETL_PYTHON, else the package's `.venv` interpreter.
    public static var python: String { variable("DICOM_ETL_PYTHON") ?? packageRoot + "/.venv/bin/python" }

    /// The admin URL of the test PostgreSQL that `scripts/with-services.sh` starts, when it runs.
    public static var databaseAdminURL: String? { variable("DICOM_ETL_TEST_DATABASE_URL") }

    /// The DICOM corpus folder. It may not exist (no ../shared and no venv): suites check before they use it.
    public static let corpus: String = {
        if let set = variable("DICOM_ETL_CORPUS") { return set }
        let shared = URL(fileURLWithPath: packageRoot + "/../shared/data/dicom").standardizedFileURL.path
        if FileManager.default.fileExists(atPath: shared) { return shared }
        return pydicomTestFiles() ?? shared
    }()

    /// Whether the corpus folder exists.
    public static var hasCorpus: Bool { FileManager.default.fileExists(atPath: corpus) }

    /// A corpus file by its name, wherever the corpus keeps it (the shared corpus's folders or pydicom's files).
    public static func corpusFile(named name: String) -> String? {
        guard let walker = FileManager.default.enumerator(atPath: corpus) else { return nil }
        while let relative = walker.nextObject() as? String {
            if (relative as NSString).lastPathComponent == name { return (corpus as NSString).appendingPathComponent(relative) }
        }
        return nil
    }

    /// The test files folder of the pydicom the test interpreter imports.
    public static func pydicomTestFiles() -> String? {
        guard FileManager.default.isExecutableFile(atPath: python) else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", "import os, pydicom; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files'))"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let path = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return process.terminationStatus == 0 && FileManager.default.fileExists(atPath: path) ? path : nil
    }

    private static func variable(_ name: String) -> String? {
        guard let value = variables[name], !value.isEmpty else { return nil }
        return value
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read back, closed).
public func freeLocalPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw POSIXError(.EADDRINUSE) }
    return Int(UInt16(bigEndian: address.sin_port))
}
