// Test support: locating the package, the shipped recipes, the Python reference and the corpus,
// and running the reference interpreter.
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import NPY
@testable import Normalization
import TestSupport

enum TestSupport {
    /// The package root (three levels above this file).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static var recipeDirectory: String { packageRoot + "/etl/normalize" }
    static var referenceScript: String { packageRoot + "/scripts/normalize_reference.py" }

    /// DICOM_ETL_PYTHON, else the package's .venv interpreter.
    static var python: String { TestEnvironment.python }

    /// The test corpus (TestEnvironment.corpus), nil when there is none.
    static var corpus: String? { TestEnvironment.hasCorpus ? TestEnvironment.corpus : nil }

    struct RunResult {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a program to completion; stdout/stderr are drained concurrently so large outputs cannot block.
    static func run(_ program: String, _ arguments: [String], stdin: String? = nil) throws -> RunResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let input = Pipe()
        p.standardInput = input
        try p.run()
        signal(SIGPIPE, SIG_IGN)  // a child that dies early fails the test instead of killing the process
        if let s = stdin { input.fileHandleForWriting.write(Data(s.utf8)) }
        try input.fileHandleForWriting.close()
        nonisolated(unsafe) var errData = Data()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return RunResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Runs Python code with the test interpreter; throws when it exits non-zero.
    static func python(_ code: String, _ arguments: [String] = []) throws -> String {
        let r = try run(python, ["-c", code] + arguments)
        guard r.status == 0 else { throw TestFailure("python exited \(r.status): \(r.stderr.suffix(2000))") }
        return r.stdout
    }

    static func temporaryDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "normalization-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }
}

/// A `.npy` file's shape and elements as Float values, through the project's codec.
enum NPYReader {
    static func read(_ path: String) throws -> (shape: [Int], values: [Float]) {
        guard let data = FileManager.default.contents(atPath: path) else { throw TestFailure("cannot read npy") }
        let array = try NPYArray(decoding: [UInt8](data))
        return (array.shape, array.floats)
    }
}
