// The child's side of the pool: reads requests from stdin, runs each job's handler in order and writes one
// answer per job to stdout as soon as it is done, so the parent keeps every finished job if a later one
// takes the child down.
#if canImport(Glibc)
import Glibc
#endif
import CLinux
import CodedErrors

/// Serves sandbox jobs in a child process.
public enum SandboxWorker {
    /// A job's handler: input bytes to output bytes. A thrown `CodedError` reports its reason.
    public typealias Handler = @Sendable ([UInt8]) throws -> [UInt8]

    /// A child runs one job after another with much the same working set (a decoded image and its Float copies,
    /// tens of MB each). glibc would map each such block afresh and unmap it when freed, so every job faults in
    /// and zeroes its pages again; blocks under 64 MiB now come from the heap, and up to 128 MiB of free heap is
    /// kept for the next job. The child's resident size stays near its largest job's (on the compressed bench
    /// workload: 1.19x the files/s, 18 % less CPU per file, about 120 MB kept per child).
    static func keepLargeBlocks() {
        _ = mallopt(M_MMAP_THRESHOLD, 64 << 20)
        _ = mallopt(M_TRIM_THRESHOLD, 128 << 20)
    }

    /// Serves jobs until stdin ends; returns the exit status. Standard output is redirected to standard
    /// error first, so stray prints (e.g. from C++ libraries) cannot corrupt the frames.
    public static func serve(handlers: [String: Handler]) -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        keepLargeBlocks()
        let input = dup(0)
        let output = dup(1)
        guard input >= 0, output >= 0 else { return 70 }
        dup2(2, 1)
        let null = open("/dev/null", O_RDONLY)
        if null >= 0 { dup2(null, 0); close(null) }
        while true {
            guard let header = readExactly(input, 4) else { return 0 }   // end of input: normal shutdown
            var offset = 0
            let length = Int(Framing.read(UInt32.self, header, &offset)!)
            guard length >= 6, length <= Framing.maximumFrame, let body = readExactly(input, length),
                let (kind, payloads) = Framing.parseRequest(body)
            else { return 65 }
            let handler = handlers[kind]
            for (index, payload) in payloads.enumerated() {
                let frame: [UInt8]
                if let handler {
                    do {
                        frame = Framing.response(index: index, ok: true, body: try handler(payload))
                    } catch let error as any CodedError {
                        frame = Framing.response(index: index, ok: false, body: Array(error.reason.utf8))
                    } catch {
                        frame = Framing.response(index: index, ok: false, body: Array("job_failed".utf8))
                    }
                } else {
                    frame = Framing.response(index: index, ok: false, body: Array("unknown_job_kind".utf8))
                }
                guard writeAll(output, frame) else { return 0 }
            }
        }
    }
}
