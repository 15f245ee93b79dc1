// Crash isolation for untrusted input: long-lived child processes (the same executable, started with a
// hidden subcommand) run jobs sent as length-prefixed frames over their stdin/stdout. A child that dies
// mid-job fails that job with `process_crashed` and is started again; a job over its timeout is killed.
// Blocking pipe I/O runs on its own thread per job, never on the cooperative pool.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

/// Why a sandboxed job failed.
public struct SandboxError: Error, Sendable, Hashable, CustomStringConvertible, ReasonedError {
    /// Machine-readable reason.
    public struct Code: RawRepresentable, Hashable, Sendable {
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

    public var description: String {
        var text = "sandbox job failed: \(code.rawValue)"
        if let jobReason { text += " (\(jobReason))" }
        if let signal { text += " (signal \(signal))" }
        return text
    }
}

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

    /// This process's own executable (`/proc/self/exe`) with `arguments`, e.g. `["sandbox-worker"]`.
    public static func currentExecutable(arguments: [String], environment: [String: String] = defaultEnvironment) -> SandboxCommand {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let path = count > 0 ? String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
        return SandboxCommand(executable: path, arguments: arguments, environment: environment)
    }
}

/// A fixed set of long-lived sandbox children; `run` waits for a free one.
public actor SandboxPool {
    private let processes: [SandboxProcess]
    private var idle: [SandboxProcess]
    private var waiters: [CheckedContinuation<SandboxProcess?, Never>] = []
    private var closed = false
    private let defaultTimeout: Duration

    /// - Parameters:
    ///   - command: how to start a child.
    ///   - size: number of children (started lazily, on first use).
    ///   - timeout: default per-job timeout.
    ///   - metrics: counts crashes and restarts.
    public init(command: SandboxCommand, size: Int, timeout: Duration, metrics: IngestMetrics? = nil, logger: Logger) {
        precondition(size > 0)
        // A write to a child that just died must fail with EPIPE, not kill the daemon.
        signal(SIGPIPE, SIG_IGN)
        processes = (0..<size).map { _ in SandboxProcess(command: command, metrics: metrics, logger: logger) }
        idle = processes
        defaultTimeout = timeout
    }

    /// Runs one job in a child.
    /// - Parameters:
    ///   - kind: which handler of the child runs it.
    ///   - payload: the job's input.
    ///   - timeout: overrides the pool's timeout.
    /// - Returns: the handler's output.
    public func run(kind: String, payload: [UInt8], timeout: Duration? = nil) async throws(SandboxError) -> [UInt8] {
        guard let process = await acquire() else { throw SandboxError(.shutDown) }
        let result = await process.perform(kind: kind, payload: payload, timeout: timeout ?? defaultTimeout)
        release(process)
        return try result.get()
    }

    /// Process IDs of the children currently running (for tests and diagnostics).
    public var childProcessIDs: [Int32] { processes.compactMap { $0.processID } }

    /// Stops every child (closing its stdin, then SIGKILL after a grace period); further jobs fail with `shut_down`.
    public func shutdown() async {
        closed = true
        for waiter in waiters { waiter.resume(returning: nil) }
        waiters.removeAll()
        for process in processes { await process.terminate() }
    }

    private func acquire() async -> SandboxProcess? {
        if closed { return nil }
        if let process = idle.popLast() { return process }
        return await withCheckedContinuation { waiters.append($0) }
    }

    private func release(_ process: SandboxProcess) {
        if !waiters.isEmpty {
            waiters.removeFirst().resume(returning: process)
        } else {
            idle.append(process)
        }
    }
}

/// One child process and its pipes. Used by one job at a time (the pool guarantees it).
final class SandboxProcess: @unchecked Sendable {
    static let spawnLock = NSLock()
    private let command: SandboxCommand
    private let metrics: IngestMetrics?
    private let logger: Logger
    private let lock = NSLock()
    private var pid: pid_t?
    private var toChild: Int32 = -1
    private var fromChild: Int32 = -1
    private var jobRunning = false
    private var killedForTimeout = false
    private var hasRunBefore = false

    init(command: SandboxCommand, metrics: IngestMetrics?, logger: Logger) {
        self.command = command
        self.metrics = metrics
        self.logger = logger
    }

    var processID: Int32? { lock.withLock { pid } }

    func perform(kind: String, payload: [UInt8], timeout: Duration) async -> Result<[UInt8], SandboxError> {
        if let error = ensureRunning() { return .failure(error) }
        var request: [UInt8] = []
        let kindBytes = Array(kind.utf8)
        request.reserveCapacity(6 + kindBytes.count + payload.count)
        appendLittleEndian(UInt32(2 + kindBytes.count + payload.count), to: &request)
        appendLittleEndian(UInt16(kindBytes.count), to: &request)
        request += kindBytes
        request += payload
        lock.withLock {
            jobRunning = true
            killedForTimeout = false
        }
        let frame = request
        return await withTaskGroup(of: Result<[UInt8], SandboxError>?.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let thread = Thread { continuation.resume(returning: self.exchange(frame)) }
                    thread.name = "sandbox-io"
                    thread.start()
                }
            }
            group.addTask {
                do { try await Task.sleep(for: timeout) } catch { return nil }
                self.killForTimeout()
                return nil
            }
            var outcome: Result<[UInt8], SandboxError> = .failure(SandboxError(.protocolError))
            for await result in group {
                if let result {
                    outcome = result
                    group.cancelAll()
                }
            }
            return outcome
        }
    }

    /// Closes the child's stdin (it exits at end of input), waits up to a second, then kills it.
    func terminate() async {
        let current: pid_t? = lock.withLock {
            let current = pid
            if toChild >= 0 { close(toChild); toChild = -1 }
            return current
        }
        guard let current else { return }
        var reaped = false
        for _ in 0..<1000 {
            var status: Int32 = 0
            if waitpid(current, &status, WNOHANG) != 0 {
                reaped = true
                break
            }
            try? await Task.sleep(for: .milliseconds(1))
            if lock.withLock({ pid }) == nil { return }
        }
        lock.withLock {
            if pid == current && !reaped {
                kill(current, SIGKILL)
                var status: Int32 = 0
                waitpid(current, &status, 0)
            }
            if fromChild >= 0 { close(fromChild); fromChild = -1 }
            pid = nil
        }
    }

    private func killForTimeout() {
        lock.withLock {
            guard jobRunning, let pid else { return }
            killedForTimeout = true
            kill(pid, SIGKILL)
        }
    }

    /// Starts the child unless it runs. Returns an error when it cannot be started.
    private func ensureRunning() -> SandboxError? {
        lock.lock()
        defer { lock.unlock() }
        if pid != nil { return nil }
        // Pipes are created close-on-exec under one lock with the spawn, so a sibling child started at
        // the same moment cannot inherit them (and keep a dead child's pipe open).
        SandboxProcess.spawnLock.lock()
        defer { SandboxProcess.spawnLock.unlock() }
        var input: [Int32] = [-1, -1]
        var output: [Int32] = [-1, -1]
        guard pipe(&input) == 0 else { return SandboxError(.spawnFailed) }
        guard pipe(&output) == 0 else {
            close(input[0]); close(input[1])
            return SandboxError(.spawnFailed)
        }
        for fd in input + output { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)

        var environment = ProcessInfo.processInfo.environment
        for (key, value) in command.environment { environment[key] = value }
        let argv = ([command.executable] + command.arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var child: pid_t = 0
        let status = posix_spawn(&child, command.executable, &actions, nil, argv, envp)
        close(input[0])
        close(output[1])
        guard status == 0 else {
            close(input[1]); close(output[0])
            logger.error("sandbox process could not be started", metadata: ["errno": .stringConvertible(status)])
            return SandboxError(.spawnFailed)
        }
        pid = child
        toChild = input[1]
        fromChild = output[0]
        if hasRunBefore { metrics?.sandboxRestarts.increment() }
        hasRunBefore = true
        return nil
    }

    /// Sends one request and reads its response; blocking, run on a dedicated thread.
    private func exchange(_ request: [UInt8]) -> Result<[UInt8], SandboxError> {
        let (writeFD, readFD) = lock.withLock { (toChild, fromChild) }
        guard writeAll(writeFD, request), let header = readExactly(readFD, 4) else { return .failure(reapAfterLoss()) }
        let length = Int(header[0]) | Int(header[1]) << 8 | Int(header[2]) << 16 | Int(header[3]) << 24
        guard length >= 1, let body = readExactly(readFD, length) else { return .failure(reapAfterLoss()) }
        let finishedInTime = lock.withLock {
            jobRunning = false
            return !killedForTimeout
        }
        guard finishedInTime else { return .failure(reapAfterLoss()) }
        switch body[0] {
        case 0: return .success(Array(body[1...]))
        case 1: return .failure(SandboxError(.jobFailed, jobReason: String(decoding: body[1...], as: UTF8.self)))
        default:
            _ = lock.withLock { pid.map { kill($0, SIGKILL) } }
            return .failure(reapAfterLoss(protocolError: true))
        }
    }

    /// The child stopped answering: collect its status, close the pipes, forget it (it is started again
    /// on the next job) and say why.
    private func reapAfterLoss(protocolError: Bool = false) -> SandboxError {
        let (current, timedOut): (pid_t?, Bool) = lock.withLock { (pid, killedForTimeout) }
        var status: Int32 = 0
        if let current {
            // The pipe closed: the child is gone or going. Kill it to be sure it does not linger.
            var waited = waitpid(current, &status, WNOHANG)
            for _ in 0..<50 where waited == 0 {
                usleep(2_000)
                waited = waitpid(current, &status, WNOHANG)
            }
            if waited == 0 {
                kill(current, SIGKILL)
                waitpid(current, &status, 0)
            }
        }
        lock.withLock {
            if toChild >= 0 { close(toChild); toChild = -1 }
            if fromChild >= 0 { close(fromChild); fromChild = -1 }
            pid = nil
            jobRunning = false
        }
        let error: SandboxError
        if protocolError {
            error = SandboxError(.protocolError)
        } else if timedOut {
            error = SandboxError(.timedOut)
        } else {
            let signal = status & 0x7f
            error = SandboxError(.processCrashed, signal: signal != 0 && signal != 0x7f ? signal : nil)
        }
        metrics?.sandboxCrashed(reason: error.code.rawValue)
        logger.warning("sandbox process lost with its job", metadata: ["reason": .string(error.code.rawValue)])
        return error
    }
}

/// The child's side of the pool: reads jobs from stdin, runs their handler, writes results to stdout.
public enum SandboxWorker {
    /// A job's handler: input bytes to output bytes. A thrown `ReasonedError` reports its reason.
    public typealias Handler = @Sendable ([UInt8]) throws -> [UInt8]

    /// Serves jobs until stdin ends; returns the exit status. Standard output is redirected to standard
    /// error first, so stray prints (e.g. from C++ libraries) cannot corrupt the frames.
    public static func serve(handlers: [String: Handler]) -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        let input = dup(0)
        let output = dup(1)
        guard input >= 0, output >= 0 else { return 70 }
        dup2(2, 1)
        let null = open("/dev/null", O_RDONLY)
        if null >= 0 { dup2(null, 0); close(null) }
        while true {
            guard let header = readExactly(input, 4) else { return 0 }   // end of input: normal shutdown
            let length = Int(header[0]) | Int(header[1]) << 8 | Int(header[2]) << 16 | Int(header[3]) << 24
            guard length >= 2, let body = readExactly(input, length) else { return 65 }
            let kindLength = Int(body[0]) | Int(body[1]) << 8
            guard 2 + kindLength <= body.count else { return 65 }
            let kind = String(decoding: body[2..<(2 + kindLength)], as: UTF8.self)
            let payload = Array(body[(2 + kindLength)...])
            var response: [UInt8]
            if let handler = handlers[kind] {
                do {
                    let result = try handler(payload)
                    response = [0] + result
                } catch let error as any ReasonedError {
                    response = [1] + Array(error.reason.utf8)
                } catch {
                    response = [1] + Array("job_failed".utf8)
                }
            } else {
                response = [1] + Array("unknown_job_kind".utf8)
            }
            var frame: [UInt8] = []
            appendLittleEndian(UInt32(response.count), to: &frame)
            frame += response
            guard writeAll(output, frame) else { return 0 }
        }
    }
}

private func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
    withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
}

private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    guard fd >= 0 else { return false }
    return bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }
}

private func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
    guard fd >= 0 else { return nil }
    var bytes = [UInt8](repeating: 0, count: count)
    var offset = 0
    let ok = bytes.withUnsafeMutableBytes { buffer -> Bool in
        while offset < count {
            let got = read(fd, buffer.baseAddress! + offset, count - offset)
            if got < 0 {
                if errno == EINTR { continue }
                return false
            }
            if got == 0 { return false }
            offset += got
        }
        return true
    }
    return ok ? bytes : nil
}
