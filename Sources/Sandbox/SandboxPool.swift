// Crash isolation for untrusted input: long-lived child processes (the same executable, started with a
// hidden subcommand) run jobs that arrive in batches. Each child has one long-lived I/O thread that takes a
// few jobs at a time from the pool's queue, sends them as one frame and reads one answer per job as the child
// finishes it. A child that dies mid-job fails only the job in hand (`process_crashed`); the jobs sent with it
// go back to the front of the queue for the restarted child. A job over its timeout gets the child killed.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import Synchronization

/// One job's answer: its position in the submitted batch and what came of it.
public struct SandboxResult: Sendable {
    public let index: Int
    public let result: Result<[UInt8], SandboxError>
}

/// What the pool tells its owner about its children (for metrics).
public struct SandboxEvents: Sendable {
    /// A child was lost with a job: `process_crashed`, `timed_out` or `protocol_error`.
    public var lost: @Sendable (_ reason: String) -> Void
    /// A child was started again after a loss.
    public var restarted: @Sendable () -> Void

    public init(lost: @escaping @Sendable (String) -> Void = { _ in }, restarted: @escaping @Sendable () -> Void = {}) {
        self.lost = lost
        self.restarted = restarted
    }
}

/// A fixed set of long-lived sandbox children sharing one queue of jobs.
public final class SandboxPool: Sendable {
    struct Job: Sendable {
        let kind: String
        let payload: [UInt8]
        let timeout: Duration
        let deliver: @Sendable (Result<[UInt8], SandboxError>) -> Void
    }

    /// The queue and the children, under one condition lock.
    final class State: @unchecked Sendable {
        let condition = NSCondition()
        var pending: [Job] = []
        var head = 0
        var closed = false
        var started = false
        var running = 0

        var count: Int { pending.count - head }

        /// Takes up to `limit` jobs of the first job's kind (the caller holds the lock).
        func take(limit: Int) -> [Job] {
            guard head < pending.count else { return [] }
            let kind = pending[head].kind
            var taken: [Job] = []
            while head < pending.count, taken.count < limit, pending[head].kind == kind {
                taken.append(pending[head])
                head += 1
            }
            if head > 256 && head * 2 > pending.count {
                pending.removeFirst(head)
                head = 0
            }
            return taken
        }

        /// Puts jobs back at the front, in order (the caller holds the lock).
        func putBack(_ jobs: [Job]) {
            guard !jobs.isEmpty else { return }
            if head >= jobs.count {
                head -= jobs.count
                for (offset, job) in jobs.enumerated() { pending[head + offset] = job }
            } else {
                pending = jobs + pending[head...]
                head = 0
            }
        }
    }

    private let state = State()
    private let children: [SandboxChild]
    private let defaultTimeout: Duration
    private let logger: Logger

    /// - Parameters:
    ///   - command: how to start a child.
    ///   - size: number of children (started on first use).
    ///   - timeout: default per-job timeout.
    ///   - events: told of lost and restarted children.
    public init(command: SandboxCommand, size: Int, timeout: Duration, events: SandboxEvents = SandboxEvents(), logger: Logger) {
        precondition(size > 0)
        // A write to a child that just died must fail with EPIPE, not kill this process.
        signal(SIGPIPE, SIG_IGN)
        children = (0..<size).map { _ in SandboxChild(command: command, events: events, logger: logger) }
        defaultTimeout = timeout
        self.logger = logger
    }

    /// Number of children.
    public var size: Int { children.count }

    /// Runs jobs in the children; answers stream back as each job ends, in any order, then the stream ends.
    /// - Parameters:
    ///   - kind: which handler of the child runs them.
    ///   - payloads: one input per job.
    ///   - timeout: per job; overrides the pool's.
    public func run(kind: String, payloads: [[UInt8]], timeout: Duration? = nil) -> AsyncStream<SandboxResult> {
        let (stream, continuation) = AsyncStream.makeStream(of: SandboxResult.self, bufferingPolicy: .unbounded)
        guard !payloads.isEmpty else {
            continuation.finish()
            return stream
        }
        let remaining = Countdown(payloads.count)
        let jobs = payloads.enumerated().map { index, payload in
            Job(kind: kind, payload: payload, timeout: timeout ?? defaultTimeout) { result in
                continuation.yield(SandboxResult(index: index, result: result))
                if remaining.decrement() { continuation.finish() }
            }
        }
        let refused: Bool = state.condition.withLock {
            if state.closed { return true }
            state.pending += jobs
            if !state.started {
                state.started = true
                for child in children {
                    state.running += 1
                    let thread = Thread { [state] in child.serve(state) }
                    thread.name = "sandbox-io"
                    thread.start()
                }
            }
            state.condition.broadcast()
            return false
        }
        if refused {
            for job in jobs { job.deliver(.failure(SandboxError(.shutDown))) }
        }
        return stream
    }

    /// Runs one job in a child and returns its output.
    public func run(kind: String, payload: [UInt8], timeout: Duration? = nil) async throws(SandboxError) -> [UInt8] {
        for await answer in run(kind: kind, payloads: [payload], timeout: timeout) { return try answer.result.get() }
        throw SandboxError(.shutDown)
    }

    /// Process IDs of the children currently running (for tests and diagnostics).
    public var childProcessIDs: [Int32] { children.compactMap(\.processID) }

    /// Fails the queued jobs with `shut_down`, lets each child finish the jobs it holds, then stops the
    /// children (closing their input; SIGKILL after a second) and their threads.
    public func shutdown() async {
        let dropped: [Job] = state.condition.withLock {
            state.closed = true
            let dropped = Array(state.pending[state.head...])
            state.pending.removeAll()
            state.head = 0
            state.condition.broadcast()
            return dropped
        }
        for job in dropped { job.deliver(.failure(SandboxError(.shutDown))) }
        while state.condition.withLock({ state.running > 0 }) {
            try? await Task.sleep(for: .milliseconds(2))
        }
        for child in children { await child.terminate() }
    }
}

/// Counts down from n; true for the call that reaches zero.
final class Countdown: Sendable {
    private let left: Mutex<Int>
    init(_ count: Int) { left = Mutex(count) }
    func decrement() -> Bool { left.withLock { $0 -= 1; return $0 == 0 } }
}

/// One child process, driven by its own I/O thread (`serve`).
final class SandboxChild: @unchecked Sendable {
    static let spawnLock = NSLock()
    private let command: SandboxCommand
    private let events: SandboxEvents
    private let logger: Logger
    private let lock = NSLock()
    // Guarded by `lock`: read by `processID` and `terminate` from other threads.
    private var pid: pid_t?
    private var toChild: Int32 = -1
    private var fromChild: Int32 = -1
    // Only touched by the I/O thread.
    private var reader: DeadlineReader?
    private var hasRunBefore = false

    init(command: SandboxCommand, events: SandboxEvents, logger: Logger) {
        self.command = command
        self.events = events
        self.logger = logger
    }

    var processID: Int32? { lock.withLock { pid } }

    /// The I/O thread: takes jobs while the pool is open, runs them, and returns when it is closed and empty.
    func serve(_ state: SandboxPool.State) {
        while true {
            state.condition.lock()
            while state.count == 0 && !state.closed { state.condition.wait() }
            if state.count == 0 {
                state.running -= 1
                state.condition.unlock()
                return
            }
            // A few jobs per frame: the child never waits for the parent, and a batch still spreads over every child.
            let share = state.count / max(1, 2 * state.running)
            let jobs = state.take(limit: min(8, max(1, share)))
            state.condition.unlock()
            let unfinished = runChunk(jobs)
            if !unfinished.isEmpty {
                state.condition.withLock {
                    if state.closed {
                        for job in unfinished { job.deliver(.failure(SandboxError(.shutDown))) }
                    } else {
                        state.putBack(unfinished)
                        state.condition.broadcast()
                    }
                }
            }
        }
    }

    /// Sends `jobs` as one frame and delivers each answer; returns the jobs not run (the child was lost
    /// before it reached them).
    private func runChunk(_ jobs: [SandboxPool.Job]) -> [SandboxPool.Job] {
        let freshlyStarted: Bool
        switch ensureRunning() {
        case .failure(let error):
            for job in jobs { job.deliver(.failure(error)) }
            return []
        case .success(let started): freshlyStarted = started
        }
        let frame = Framing.request(kind: jobs[0].kind, payloads: jobs.map(\.payload))
        let writeFD = lock.withLock { toChild }
        guard writeAll(writeFD, frame) else {
            // The child was gone before it saw the frame: not these jobs' fault. A child that dies at once
            // after its start cannot serve at all.
            _ = reap(reason: nil)
            if freshlyStarted {
                for job in jobs { job.deliver(.failure(SandboxError(.spawnFailed))) }
                return []
            }
            return jobs
        }
        var index = 0
        while index < jobs.count {
            let deadline = ContinuousClock.now + jobs[index].timeout
            switch readAnswer(deadline: deadline) {
            case .answer(let answerIndex, let ok, let body):
                guard answerIndex == index else {
                    kill()
                    jobs[index].deliver(.failure(reap(reason: .protocolError)))
                    return Array(jobs[(index + 1)...])
                }
                jobs[index].deliver(ok ? .success(body) : .failure(SandboxError(.jobFailed, jobReason: String(decoding: body, as: UTF8.self))))
                index += 1
            case .lost:
                jobs[index].deliver(.failure(reap(reason: .processCrashed)))
                return Array(jobs[(index + 1)...])
            case .timedOut:
                kill()
                jobs[index].deliver(.failure(reap(reason: .timedOut)))
                return Array(jobs[(index + 1)...])
            case .garbage:
                kill()
                jobs[index].deliver(.failure(reap(reason: .protocolError)))
                return Array(jobs[(index + 1)...])
            }
        }
        return []
    }

    enum Answer { case answer(Int, Bool, [UInt8]), lost, timedOut, garbage }

    private func readAnswer(deadline: ContinuousClock.Instant) -> Answer {
        guard var reader else { return .lost }
        defer { self.reader = reader }
        switch reader.read(4, deadline: deadline) {
        case .endOfInput: return .lost
        case .timedOut: return .timedOut
        case .bytes(let header):
            var offset = 0
            let length = Int(Framing.read(UInt32.self, header, &offset)!)
            guard length >= 5, length <= Framing.maximumFrame else { return .garbage }
            switch reader.read(length, deadline: deadline) {
            case .endOfInput: return .lost
            case .timedOut: return .timedOut
            case .bytes(let body):
                guard body[0] <= 1 else { return .garbage }
                var position = 1
                let index = Int(Framing.read(UInt32.self, body, &position)!)
                return .answer(index, body[0] == 0, Array(body[5...]))
            }
        }
    }

    private func kill() {
        lock.withLock { if let pid { _ = Glibc.kill(pid, SIGKILL) } }
    }

    /// Starts the child unless it runs; `true` when it was started now.
    private func ensureRunning() -> Result<Bool, SandboxError> {
        lock.lock()
        defer { lock.unlock() }
        if pid != nil { return .success(false) }
        // Pipes are created close-on-exec under one lock with the spawn, so a sibling child started at
        // the same moment cannot inherit them (and keep a dead child's pipe open).
        SandboxChild.spawnLock.lock()
        defer { SandboxChild.spawnLock.unlock() }
        var input: [Int32] = [-1, -1]
        var output: [Int32] = [-1, -1]
        guard pipe(&input) == 0 else { return .failure(SandboxError(.spawnFailed)) }
        guard pipe(&output) == 0 else {
            close(input[0]); close(input[1])
            return .failure(SandboxError(.spawnFailed))
        }
        for fd in input + output { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)

        var environment = ProcessInfo.processInfo.environment.filter { SandboxCommand.inherits($0.key) }
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
            return .failure(SandboxError(.spawnFailed))
        }
        pid = child
        toChild = input[1]
        fromChild = output[0]
        reader = DeadlineReader(fd: output[0])
        if hasRunBefore { events.restarted() }
        hasRunBefore = true
        return .success(true)
    }

    /// The child is gone or killed: collect its status, close the pipes, forget it (it is started again with
    /// the next jobs) and say why; `reason` nil when no job was in hand.
    @discardableResult
    private func reap(reason: SandboxError.Code?) -> SandboxError {
        let current: pid_t? = lock.withLock { pid }
        var status: Int32 = 0
        if let current {
            var waited = waitpid(current, &status, WNOHANG)
            for _ in 0..<50 where waited == 0 {
                usleep(2_000)
                waited = waitpid(current, &status, WNOHANG)
            }
            if waited == 0 {
                Glibc.kill(current, SIGKILL)
                waitpid(current, &status, 0)
            }
        }
        lock.withLock {
            if toChild >= 0 { close(toChild); toChild = -1 }
            if fromChild >= 0 { close(fromChild); fromChild = -1 }
            pid = nil
        }
        reader = nil
        guard let reason else { return SandboxError(.processCrashed) }
        let signal = status & 0x7f
        let error = reason == .processCrashed
            ? SandboxError(.processCrashed, signal: signal != 0 && signal != 0x7f ? signal : nil)
            : SandboxError(reason)
        events.lost(error.code.rawValue)
        logger.warning("sandbox process lost with its job", metadata: ["reason": .string(error.code.rawValue)])
        return error
    }

    /// Closes the child's input (it exits at end of input), waits up to a second, then kills it.
    func terminate() async {
        let current: pid_t? = lock.withLock {
            if toChild >= 0 { close(toChild); toChild = -1 }
            return pid
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
        }
        lock.withLock {
            if !reaped {
                Glibc.kill(current, SIGKILL)
                var status: Int32 = 0
                waitpid(current, &status, 0)
            }
            if fromChild >= 0 { close(fromChild); fromChild = -1 }
            pid = nil
        }
    }
}
