// A sandbox child for the SandboxPool tests: jobs that echo, fail, crash (SIGSEGV, abort) or hang.
#if canImport(Glibc)
import Glibc
#endif
import Ingest

struct TestJobError: ReasonedError {
    let reason: String
}

let handlers: [String: SandboxWorker.Handler] = [
    "echo": { $0 },
    "pid": { _ in Array(String(getpid()).utf8) },
    "fail": { _ in throw TestJobError(reason: "test_reason") },
    "segfault": { payload in
        // A genuine invalid memory access, as a crashing C++ parser would make.
        let address = 8 + payload.count
        UnsafeMutablePointer<Int>(bitPattern: address)!.pointee = 42
        return []
    },
    "abort": { _ in abort() },
    "hang": { _ in
        while true { sleep(1000) }
    },
    "print": { payload in
        // Stray output on stdout must not corrupt the frames.
        print("noise from a library")
        return payload
    },
]
exit(SandboxWorker.serve(handlers: handlers))
