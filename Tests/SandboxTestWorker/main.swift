// A sandbox child for the SandboxPool tests: jobs that echo, fail, crash (SIGSEGV, abort) or hang,
// and a DICOM parse with and without the nesting guard (the payload is a file path). Its "process"
// job is the daemon's, except that a source file named crash* takes the child down.
#if canImport(Glibc)
import Glibc
#endif
import CodedErrors
import DICOM
import Foundation
import Ingest
import Sandbox

struct TestJobError: CodedError {
    struct Code: ErrorCode {
        let rawValue: String
        init(rawValue: String) { self.rawValue = rawValue }
    }

    let code: Code
    init(reason: String) { code = Code(rawValue: reason) }
    var description: String { "test job failed: \(code.rawValue)" }
}

let handlers: [String: SandboxWorker.Handler] = [
    "echo": { $0 },
    "pid": { _ in Array(String(getpid()).utf8) },
    "environment": { _ in Array(ProcessInfo.processInfo.environment.keys.sorted().joined(separator: "\n").utf8) },
    "fail": { _ in throw TestJobError(reason: "test_reason") },
    "segfault": { payload in
        // A genuine invalid memory access, as a crashing C++ parser would make.
        let address = 8 + payload.count
        UnsafeMutablePointer<Int>(bitPattern: address)!.pointee = 42
        return []
    },
    "abort": { _ in abort() },
    "echo-or-crash": { payload in
        if payload == Array("crash".utf8) { abort() }
        return payload
    },
    "echo-or-hang": { payload in
        if payload == Array("hang".utf8) { while true { sleep(1000) } }
        return payload
    },
    "hang": { _ in
        while true { sleep(1000) }
    },
    "parse": { payload in
        let file = try DicomFile.open(path: String(decoding: payload, as: UTF8.self))
        return Array(file.transferSyntaxUID.utf8)
    },
    "parse-unguarded": { payload in
        // Without the nesting limit: hostile files reach DCMTK's recursion as they would without the guard.
        let file = try DicomFile.open(path: String(decoding: payload, as: UTF8.self), maxSequenceNesting: Int(Int32.max))
        return Array(file.transferSyntaxUID.utf8)
    },
    ProcessJob.kind: { payload in
        if let request = try? ProcessRequest(encoded: payload),
            (request.sourcePath as NSString).lastPathComponent.hasPrefix("crash")
        {
            abort()   // as a crashing C++ parser would
        }
        return try ProcessJob.handler(payload)
    },
    "print": { payload in
        // Stray output on stdout must not corrupt the frames.
        print("noise from a library")
        return payload
    },
]
exit(SandboxWorker.serve(handlers: handlers))
