// Why a sandboxed job failed. A job's handler reports a `CodedError`'s reason back over the pipe.
import CodedErrors

/// Why a sandboxed job failed.
public struct SandboxError: CodedError, Hashable {
    /// Machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The child died (signal or exit) while running the job.
        public static let processCrashed = Code(rawValue: "process_crashed")
        /// The job ran over its timeout; the child was killed.
        public static let timedOut = Code(rawValue: "timed_out")
        /// The job's handler reported an error (see `jobReason`).
        public static let jobFailed = Code(rawValue: "job_failed")
        /// The child could not be started.
        public static let spawnFailed = Code(rawValue: "spawn_failed")
        /// The child answered something that is not a frame.
        public static let protocolError = Code(rawValue: "protocol_error")
        /// The pool was shut down.
        public static let shutDown = Code(rawValue: "shut_down")
    }

    public let code: Code
    /// For `jobFailed`: the handler's machine-readable reason (e.g. `not_dicom`).
    public let jobReason: String?
    /// For `processCrashed`: the signal that killed the child, if any.
    public let signal: Int32?

    public init(_ code: Code, jobReason: String? = nil, signal: Int32? = nil) {
        self.code = code
        self.jobReason = jobReason
        self.signal = signal
    }

    /// `jobReason` for failed jobs, otherwise the code (`process_crashed`, `timed_out`, …).
    public var reason: String { code == .jobFailed ? (jobReason ?? code.rawValue) : code.rawValue }

    /// True when the child was lost with the job (crash, timeout, garbage on the pipe): maybe the input's fault.
    public var lostChild: Bool { code == .processCrashed || code == .timedOut || code == .protocolError }

    public var description: String {
        var text = "sandbox job failed: \(code.rawValue)"
        if let jobReason { text += " (\(jobReason))" }
        if let signal { text += " (signal \(signal))" }
        return text
    }
}
