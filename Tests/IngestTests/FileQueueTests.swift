// Tests of the bounded, de-duplicating hand-off between watcher and pipeline.
import Foundation
@testable import Ingest
import Testing

@Suite struct FileQueueTests {
    @Test func producerWaitsWhileFullAndResumesWhenAConsumerTakes() async throws {
        let queue = FileQueue(capacity: 2)
        #expect(await queue.offer(makeFile("/d/1", root: "/d")))
        #expect(await queue.offer(makeFile("/d/2", root: "/d")))
        let third = Task { await queue.offer(makeFile("/d/3", root: "/d")) }
        try await Task.sleep(for: .milliseconds(50))
        #expect(queue.depth == 2)   // the third is held back
        #expect(queue.isPending("/d/3"))
        let first = await queue.next()
        #expect(first?.path == "/d/1")
        #expect(await third.value)
        #expect(queue.depth == 2)
        #expect(queue.inFlight == 1)
        #expect(await queue.next()?.path == "/d/2")
        #expect(await queue.next()?.path == "/d/3")
        #expect(queue.inFlight == 3)
    }

    /// One producer (as the watcher) and two consumers (as the pipeline's workers) racing over a small queue:
    /// every file is taken exactly once and none is left behind in the buffer while consumers wait.
    @Test(.timeLimit(.minutes(1))) func racingProducerAndConsumersLoseNoFile() async throws {
        let queue = FileQueue(capacity: 2)
        let total = 4_000
        final class Taken: @unchecked Sendable {
            let lock = NSLock()
            var paths: [String] = []
            func add(_ path: String) -> Int { lock.withLock { paths.append(path); return paths.count } }
            var count: Int { lock.withLock { paths.count } }
        }
        let taken = Taken()
        let consumers = (0..<2).map { _ in
            Task {
                while let file = await queue.next() {
                    _ = taken.add(file.path)
                    if Int.random(in: 0..<3) == 0 { await Task.yield() }
                    queue.complete(file.path)
                }
            }
        }
        for i in 0..<total {
            #expect(await queue.offer(makeFile("/d/\(i)", root: "/d")))
            await Task.yield()
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while taken.count < total && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(taken.count == total, "files left behind: \(total - taken.count), buffered \(queue.depth)")
        #expect(Set(taken.paths).count == taken.count, "no file taken twice")
        queue.close()
        for consumer in consumers { await consumer.value }
    }

    @Test func pendingFilesAreNotQueuedTwiceUntilCompleted() async {
        let queue = FileQueue(capacity: 4)
        #expect(await queue.offer(makeFile("/d/a", root: "/d")))
        #expect(await queue.offer(makeFile("/d/a", root: "/d")) == false)
        let taken = await queue.next()
        #expect(await queue.offer(makeFile("/d/a", root: "/d")) == false)   // in flight
        queue.complete(taken!.path)
        #expect(queue.inFlight == 0)
        #expect(await queue.offer(makeFile("/d/a", root: "/d")))           // e.g. left in place, found again
    }

    @Test func consumerWaitsForAProducer() async {
        let queue = FileQueue(capacity: 1)
        let consumer = Task { await queue.next() }
        try? await Task.sleep(for: .milliseconds(20))
        #expect(await queue.offer(makeFile("/d/x", root: "/d")))
        #expect(await consumer.value?.path == "/d/x")
    }

    @Test func closeWakesEveryoneAndDropsQueuedFiles() async {
        let queue = FileQueue(capacity: 1)
        #expect(await queue.offer(makeFile("/d/1", root: "/d")))
        let blocked = Task { await queue.offer(makeFile("/d/2", root: "/d")) }
        try? await Task.sleep(for: .milliseconds(20))
        queue.close()
        #expect(await blocked.value == false)
        #expect(queue.depth == 0)
        #expect(!queue.isPending("/d/1"))
        #expect(await queue.next() == nil)
        #expect(await queue.offer(makeFile("/d/3", root: "/d")) == false)
    }

    @Test func cancelledProducerGivesUp() async {
        let queue = FileQueue(capacity: 1)
        #expect(await queue.offer(makeFile("/d/1", root: "/d")))
        let blocked = Task { await queue.offer(makeFile("/d/2", root: "/d")) }
        try? await Task.sleep(for: .milliseconds(20))
        blocked.cancel()
        #expect(await blocked.value == false)
        #expect(!queue.isPending("/d/2"))
        #expect(queue.depth == 1)
    }
}
