// Test support: locating the package, the shipped recipes, the Python reference and the corpus,
// and running the reference interpreter.
import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import Normalization

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
    static var python: String {
        if let p = ProcessInfo.processInfo.environment["DICOM_ETL_PYTHON"], !p.isEmpty { return p }
        return packageRoot + "/.venv/bin/python"
    }

    /// DICOM_ETL_CORPUS, else ../shared/data/dicom next to the package, else pydicom's test files.
    static var corpus: String? {
        if let p = ProcessInfo.processInfo.environment["DICOM_ETL_CORPUS"], !p.isEmpty { return p }
        let shared = packageRoot + "/../shared/data/dicom"
        if FileManager.default.fileExists(atPath: shared) { return shared }
        let out = try? run(python, ["-c", "import os, pydicom; print(os.path.join(os.path.dirname(pydicom.__file__), 'data', 'test_files'))"])
        return out.map { $0.stdout.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

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

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A minimal .npy reader (format 1.0/2.0, `<f4`, `|u1`, `<f8`, C order) for comparing with the reference.
enum NPYReader {
    static func read(_ path: String) throws -> (shape: [Int], values: [Float]) {
        guard let data = FileManager.default.contents(atPath: path) else { throw TestFailure("cannot read npy") }
        let b = [UInt8](data)
        guard b.count > 10, b[0] == 0x93, b[6] == 1 || b[6] == 2 else { throw TestFailure("not npy") }
        let (hlen, start) = b[6] == 1 ? (Int(b[8]) | Int(b[9]) << 8, 10)
            : (Int(b[8]) | Int(b[9]) << 8 | Int(b[10]) << 16 | Int(b[11]) << 24, 12)
        let header = String(decoding: b[start..<(start + hlen)], as: UTF8.self)
        guard !header.contains("'fortran_order': True") else { throw TestFailure("fortran order") }
        let shapeText = header.components(separatedBy: "'shape': (")[1].components(separatedBy: ")")[0]
        let shape = shapeText.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let body = Array(b[(start + hlen)...])
        let n = shape.reduce(1, *)
        var values = [Float](repeating: 0, count: n)
        if header.contains("'<f4'") {
            for i in 0..<n {
                let bits = UInt32(body[4 * i]) | UInt32(body[4 * i + 1]) << 8 | UInt32(body[4 * i + 2]) << 16 | UInt32(body[4 * i + 3]) << 24
                values[i] = Float(bitPattern: bits)
            }
        } else if header.contains("'|u1'") {
            for i in 0..<n { values[i] = Float(body[i]) }
        } else if header.contains("'<f8'") {
            for i in 0..<n {
                var bits: UInt64 = 0
                for k in 0..<8 { bits |= UInt64(body[8 * i + k]) << (8 * k) }
                values[i] = Float(Double(bitPattern: bits))
            }
        } else {
            throw TestFailure("unsupported dtype in \(header)")
        }
        return (shape, values)
    }
}
