// Shared helpers of the de-identification tests: repository paths, the test Python, the corpus.
import Foundation

enum TestPaths {
    /// The repository root (three levels above this file).
    static let repo: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// ../shared/data/dicom-standard/confidentiality_profile_attributes.json, when present.
    static var standardTable: String? {
        let candidates = [
            repo.appendingPathComponent("../shared/data/dicom-standard/confidentiality_profile_attributes.json").standardizedFileURL.path,
            ProcessInfo.processInfo.environment["DICOM_ETL_CORPUS"].map { URL(fileURLWithPath: $0).appendingPathComponent("../dicom-standard/confidentiality_profile_attributes.json").standardizedFileURL.path },
        ].compactMap { $0 }
        return candidates.first { FileManager.default.fileExists(atPath: $0) }
    }
    /// The Python the tests use (DICOM_ETL_PYTHON, else the repository's .venv, else python3).
    static var python: String {
        if let p = ProcessInfo.processInfo.environment["DICOM_ETL_PYTHON"], !p.isEmpty { return p }
        let venv = repo.appendingPathComponent(".venv/bin/python").path
        return FileManager.default.fileExists(atPath: venv) ? venv : "/usr/bin/python3"
    }
    /// True when the test Python imports `module`.
    static func pythonHas(_ module: String) -> Bool {
        (try? run(python, ["-c", "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('\(module)') else 1)"]))?.status == 0
    }
    static func profile(_ name: String) -> String { repo.appendingPathComponent("etl/deidentify/\(name)").path }
}

/// Runs a process to completion; returns its exit status and stdout.
@discardableResult
func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, stdout: Data, stderr: Data) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    if let environment { p.environment = environment }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let errBox = DataBox()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    p.waitUntilExit()
    return (p.terminationStatus, outData, errBox.data)
}

/// Holds stderr read on another thread (written once before `group.wait()` returns).
final class DataBox: @unchecked Sendable { var data = Data() }
