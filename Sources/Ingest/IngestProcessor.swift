// The pipeline's work on a batch of files, every hand-off paid once per batch: SHA-256 of each source
// (several at once) → one claim transaction → the sandbox children (results streamed back as each file ends;
// each writes its outputs once, into the store's staging folder) → the store takes each object by rename
// (or uploads it) → one durability step for the batch's objects → one catalogue transaction for the batch
// (catalogue rows, vault, ledger transitions, audit events, quarantine, UID conflicts). Source paths go only to
// the ledger; logs carry path hashes.
//
// Failures fall in three kinds. The file's own (not DICOM, truncated, …): quarantined. Maybe the file's (its
// sandbox child crashed or timed out): one attempt counted, the file retried until `maxAttempts`, then
// quarantined with that reason; the other files of its batch are not touched. Outages (database or store
// unreachable, disk full): nothing counted, the claims released when the database answers, a `PipelineOutage`
// thrown so the runner backs off and the batch stays in the drop folder.
import Catalog
import Crypto
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import ObjectStorage
import Operations
import Sandbox

/// The daemon's `BatchProcessor`.
public struct IngestProcessor: BatchProcessor {
    /// Paths of what the sandbox child loads.
    public struct Inputs: Sendable, Hashable {
        public var routesFile: String
        public var profileFile: String
        public var keyFile: String
        public var recipesDirectory: String?
        public init(routesFile: String, profileFile: String, keyFile: String, recipesDirectory: String? = nil) {
            self.routesFile = routesFile
            self.profileFile = profileFile
            self.keyFile = keyFile
            self.recipesDirectory = recipesDirectory
        }
    }

    public let catalog: Catalog
    public let store: any ObjectStore
    public let sandbox: SandboxPool
    public let inputs: Inputs
    /// Folder the children write their outputs into (the store's staging folder, or one in the data dir).
    public let stagingDirectory: String
    /// True when the store keeps the staged files themselves (it takes them by rename): the children then start
    /// writing each one to disk as soon as it is written, so the batch's durability step finds little left to wait
    /// for. False when staged files are only read once (uploaded) and removed.
    public let stagedObjectsKept: Bool
    /// This daemon's ledger lease owner: stable across restarts of the same daemon, so a restart takes
    /// back its own unfinished files at once.
    public let owner: String
    /// How long a claim holds before another replica may take the file over (renewed while a batch runs).
    public let lease: Duration
    /// Failed attempts (sandbox crashes or timeouts) after which a file is quarantined.
    public let maxAttempts: Int
    /// Claims interrupted with no outcome (the daemon killed mid-file) after which a file is quarantined.
    public let maxInterruptions: Int
    /// What to do with a SOP Instance UID catalogued with other content.
    public let conflictPolicy: UIDConflictPolicy
    /// The clock of arrival times (compared by the series completion service).
    public let now: @Sendable () -> Date
    /// Where stage latencies (claim, sandbox, store, catalog) are recorded; nil records none.
    public let metrics: IngestMetrics?
    /// How long one database transaction may take before it counts as an outage.
    public let databaseDeadline: Duration
    /// Store uploads in flight at once (S3); a filesystem store's puts are renames.
    public let storeConcurrency: Int
    /// The clock of lease renewals and of the pause before a conflicted transaction runs again.
    public let clock: any Clock<Duration>
    public let logger: Logger

    public init(
        catalog: Catalog, store: any ObjectStore, sandbox: SandboxPool, inputs: Inputs, stagingDirectory: String, stagedObjectsKept: Bool = false,
        owner: String,
        lease: Duration, maxAttempts: Int = 3, maxInterruptions: Int = 10, conflictPolicy: UIDConflictPolicy = .quarantine,
        now: @escaping @Sendable () -> Date = { Date() }, metrics: IngestMetrics? = nil, databaseDeadline: Duration = .seconds(30),
        storeConcurrency: Int = 16, clock: any Clock<Duration> = ContinuousClock(), logger: Logger
    ) {
        self.clock = clock
        self.catalog = catalog
        self.store = store
        self.sandbox = sandbox
        self.inputs = inputs
        self.stagingDirectory = stagingDirectory
        self.stagedObjectsKept = stagedObjectsKept
        self.owner = owner
        self.lease = lease
        self.maxAttempts = maxAttempts
        self.maxInterruptions = maxInterruptions
        self.conflictPolicy = conflictPolicy
        self.now = now
        self.metrics = metrics
        self.databaseDeadline = databaseDeadline
        self.storeConcurrency = max(1, storeConcurrency)
        self.logger = logger
    }

    /// Failures that may be the file's fault or chance (a crashed or timed-out sandbox child, garbage on the pipe,
    /// a result the daemon cannot use): counted as attempts and retried, where every other failure is the file's
    /// own and quarantines it at once.
    static let retriedReasons: Set<String> = [
        SandboxError.Code.processCrashed.rawValue, SandboxError.Code.timedOut.rawValue, SandboxError.Code.protocolError.rawValue,
        "bad_response", "catalog_rejected",
    ]

    /// Failures that are outages rather than the file's fault, by reason.
    static let outageReasons: [String: PipelineOutage.Code] = [
        SandboxError.Code.spawnFailed.rawValue: .sandboxUnavailable, PipelineFailure.Code.scratchUnwritable.rawValue: .diskUnavailable,
    ]

    // MARK: The batch

    public func process(_ files: [DiscoveredFile]) async throws -> [ProcessingOutcome] {
        var outcomes = [ProcessingOutcome?](repeating: nil, count: files.count)

        // 1. Content digests (the ledger's key), several files at once.
        let digests = await Self.digests(of: files)
        var sources: [(index: Int, source: SourceFile)] = []
        for (index, digest) in digests.enumerated() {
            switch digest {
            case .success(let digest):
                sources.append((index, SourceFile(path: files[index].path, size: digest.size, mtime: digest.modificationTime, sha256: digest.sha256)))
            case .failure(let failure):
                outcomes[index] = .retry(reason: failure.reason, soon: false)
            }
        }

        // 2. One claim for the batch.
        let owner = self.owner, lease = self.lease, maxAttempts = self.maxAttempts, maxInterruptions = self.maxInterruptions
        let requested = sources.map(\.source)
        let claims = requested.isEmpty ? [] : try await timed(.claim) {
            try await database(.claim) {
                try await $0.claimSourceFiles(requested, owner: owner, lease: lease, maxAttempts: maxAttempts, maxInterruptions: maxInterruptions)
            }
        }
        var work: [Work] = []
        var isolated: [(group: Int, work: Work)] = []
        // A file claimed before that is now a duplicate: the claim recorded the objects an earlier attempt may have left.
        var leftovers = false
        for ((index, _), claim) in zip(sources, claims) {
            switch claim.claim {
            case .claimed(let entry):
                let item = Work(index: index, entry: entry, file: files[index], claimedModification: claim.file.mtime.timeIntervalSince1970)
                if let group = claim.group { isolated.append((group, item)) } else { work.append(item) }
            case .alreadyDone(let done):
                outcomes[index] = .alreadyRecorded(done.state == .quarantined
                    ? done.errorReason.map { PipelineFailure(stage: .claim, reason: $0) } ?? PipelineFailure(stage: .claim, code: .quarantined) : nil)
            case .duplicate(let entry, _):
                outcomes[index] = .duplicate
                if entry.mayHaveStoredObjects { leftovers = true }
            case .busy: outcomes[index] = .retry(reason: "claimed_elsewhere", soon: false)
            case .exhausted(let exhausted):
                let (stage, reason) = CatalogTransaction.exhaustedFailure(of: exhausted, maxAttempts: maxAttempts)
                outcomes[index] = .rejected(PipelineFailure(stage: PipelineStage(stage), reason: reason))
            }
        }
        // 3. The claimed files through the sandbox, the store and the catalogue, leases renewed meanwhile: the batch
        // together, then files interrupted in a group by a daemon that died, in smaller groups one after another
        // (a file that takes the daemon down is soon alone, and only then is an interruption counted against it).
        var groups: [[Work]] = work.isEmpty ? [] : [work]
        for (size, members) in Dictionary(grouping: isolated, by: \.group).sorted(by: { $0.key > $1.key }) {
            let items = members.map(\.work)
            groups += stride(from: 0, to: items.count, by: size).map { Array(items[$0..<min($0 + size, items.count)]) }
        }
        let all = (work + isolated.map(\.work)).map(\.entry.id)
        try await withLeasesRenewed(all) {
            for (position, group) in groups.enumerated() {
                if position > 0 || work.isEmpty {
                    let ids = group.map(\.entry.id), owner = self.owner
                    try await database(.claim) { try await $0.startSourceFileGroup(ids: ids, owner: owner) }
                }
                let decided = try await catalogue(group)
                for (item, outcome) in zip(group, decided) { outcomes[item.index] = outcome }
            }
        }
        if leftovers { await removeRecordedObjects(whose: "objects of an earlier attempt") }
        return outcomes.map { $0! }
    }

    /// A claimed file.
    struct Work: Sendable {
        var index: Int
        var entry: LedgerEntry
        var file: DiscoveredFile
        /// The source's modification time when it was digested and claimed (seconds since 1970).
        var claimedModification: Double
        /// Set for a second pass: the UID the instance takes (its own is catalogued with other content).
        var sopInstanceUIDOverride: String?
    }

    /// What the sandbox and the store made of one claimed file.
    struct Prepared: Sendable {
        var update: LedgerUpdate
        /// Keys stored for it (to make durable, or to remove when nothing refers to them).
        var keys: [String]
        var alternateSOPInstanceUID: String?
        /// An outage met on this file (`sandbox_unavailable`, `disk_unavailable`, `store_unavailable`).
        var outage: PipelineOutage.Code?
    }

    /// Sandbox → store → durability → commit for claimed files (twice for conflicts kept apart by a new UID).
    private func catalogue(_ work: [Work]) async throws -> [ProcessingOutcome] {
        var prepared = try await prepare(work)
        if let outage = prepared.lazy.compactMap(\.outage).first {
            await releaseAll(work, reason: outage.rawValue)
            throw PipelineOutage(outage)
        }
        let keys = prepared.flatMap(\.keys)
        do { try await timed(.store) { try await store.makeDurable(keys) } } catch {
            logger.warning("objects could not be made durable", metadata: LogRedaction.metadata(for: error))
            await releaseAll(work, reason: PipelineOutage.Code.storeUnavailable.rawValue)
            throw PipelineOutage(.storeUnavailable)
        }
        Failpoint.hit(Failpoint.durable)
        var results = try await commit(prepared.map(\.update))

        // Conflicts kept apart: the same files again under their keyed new UIDs, then a second commit.
        let again = work.indices.filter { if case .needsNewUID = results[$0] { return true } else { return false } }
        if !again.isEmpty {
            let second = again.map { index in
                var item = work[index]
                item.sopInstanceUIDOverride = prepared[index].alternateSOPInstanceUID
                return item
            }
            let redone = try await prepare(second)
            if let outage = redone.lazy.compactMap(\.outage).first {
                await releaseAll(second, reason: outage.rawValue)
                throw PipelineOutage(outage)
            }
            do { try await timed(.store) { try await store.makeDurable(redone.flatMap(\.keys)) } } catch {
                logger.warning("objects could not be made durable", metadata: LogRedaction.metadata(for: error))
                await releaseAll(second, reason: PipelineOutage.Code.storeUnavailable.rawValue)
                throw PipelineOutage(.storeUnavailable)
            }
            let secondResults = try await commit(redone.map(\.update))
            await removeUnreferenced(again.flatMap { prepared[$0].keys })   // the first pass's, under the taken UID
            for (position, index) in again.enumerated() {
                prepared[index] = redone[position]
                results[index] = secondResults[position]
                if case .catalogued = secondResults[position] { metrics?.uidConflict(resolution: "kept_both") }
            }
        }

        // Objects the commit found nothing refers to (recorded there, so a crash now leaves them to the next start).
        var unreferenced: [String] = []
        for (index, result) in results.enumerated() {
            switch result {
            case .duplicate(_, sharesObjects: false), .quarantined(_, "uid_conflict"): unreferenced += prepared[index].keys
            default: break
            }
        }
        await removeUnreferenced(unreferenced)
        // A replaced instance's objects, recorded by the commit that replaced it.
        if results.contains(where: { if case .replaced = $0 { true } else { false } }) {
            await removeRecordedObjects(whose: "a replaced instance's objects")
        }

        var outcomes: [ProcessingOutcome] = []
        for (index, result) in results.enumerated() {
            switch result {
            case .catalogued: outcomes.append(.ingested)
            case .replaced:
                metrics?.uidConflict(resolution: "replaced")
                outcomes.append(.ingested)
            case .duplicate:
                outcomes.append(.duplicate)
            case .quarantined(let stage, let reason):
                if reason == "uid_conflict" { metrics?.uidConflict(resolution: "quarantined") }
                outcomes.append(.rejected(PipelineFailure(stage: PipelineStage(stage), reason: reason)))
            case .failed(let attempts):
                if case .failedAttempt(_, let reason, _) = prepared[index].update.outcome {
                    logger.notice("file will be retried", metadata: [
                        "path_hash": .string(work[index].file.pathHash), "reason": .string(reason), "attempt": .stringConvertible(attempts)])
                    outcomes.append(.retry(reason: reason, soon: true))
                } else {
                    outcomes.append(.retry(reason: "failed", soon: true))
                }
            case .released:
                if case .release(let reason) = prepared[index].update.outcome { outcomes.append(.retry(reason: reason, soon: false)) } else {
                    outcomes.append(.retry(reason: "released", soon: false))
                }
            case .leaseLost: outcomes.append(.retry(reason: "lease_lost", soon: false))
            case .forgotten: outcomes.append(.retry(reason: "file_changed", soon: false))
            case .needsNewUID: outcomes.append(.retry(reason: "uid_conflict_unresolved", soon: false))
            }
        }
        return outcomes
    }

    /// Runs the files through the sandbox children and puts each one's objects into the store as its result
    /// arrives (several uploads at once).
    private func prepare(_ work: [Work]) async throws -> [Prepared] {
        let requests = work.map { item in
            ProcessRequest(
                sourcePath: item.file.path, routesFile: inputs.routesFile, profileFile: inputs.profileFile, keyFile: inputs.keyFile,
                recipesDirectory: inputs.recipesDirectory, stagingPrefix: stagingDirectory + "/\(item.entry.id)-\(item.entry.claims)",
                sopInstanceUIDOverride: item.sopInstanceUIDOverride, startWriteback: stagedObjectsKept)
        }
        let sandboxStart = ContinuousClock.now
        var prepared = [Prepared?](repeating: nil, count: work.count)
        try await withThrowingTaskGroup(of: (Int, Prepared).self) { group in
            var running = 0
            var answered = 0
            for await (index, answer) in ProcessJob.run(requests, in: sandbox) {
                answered += 1
                if answered == 2 { Failpoint.hit(Failpoint.sandbox) }
                let item = work[index]
                let result: ProcessResult
                switch answer {
                case .failure(let error):
                    prepared[index] = Self.prepared(item, forSandboxError: error, maxAttempts: maxAttempts)
                    continue
                case .success(let success): result = success
                }
                // A file that changed since its claim was still being written (taken on a close after a partial
                // write): whatever came of it is not the file's; it is taken again once it is complete.
                if Self.changedSinceClaim(item) {
                    for object in result.objects { unlink(object.path) }
                    prepared[index] = Prepared(update: LedgerUpdate(ledgerID: item.entry.id, outcome: .forget), keys: [])
                    continue
                }
                if let failure = result.failure {
                    prepared[index] = Self.prepared(item, forFailure: failure, maxAttempts: maxAttempts)
                    continue
                }
                guard let instance = result.instance, result.objects.contains(where: { $0.role == .file }) else {
                    prepared[index] = Self.prepared(item, forFailure: PipelineFailure(stage: .sandbox, code: .badResponse), maxAttempts: maxAttempts)
                    continue
                }
                if running >= storeConcurrency, let (done, value) = try await group.next() {
                    prepared[done] = value
                    running -= 1
                }
                group.addTask { (index, await self.store(instance, result, for: item)) }
                running += 1
            }
            metrics?.recordStage(.sandbox, duration: ContinuousClock.now - sandboxStart)
            for try await (done, value) in group { prepared[done] = value }
        }
        return prepared.map { $0! }
    }

    /// Puts one instance's staged objects into the store under keys derived from its pseudonymous UIDs and its
    /// ledger row: a retry of the file writes the same objects; another file, even a byte-identical copy, its
    /// own — so objects one commit finds unreferenced (a duplicate's, a conflict's) and removes are never
    /// objects another replica has just written for a file of its batch.
    private func store(_ instance: IngestedInstance, _ result: ProcessResult, for item: Work) async -> Prepared {
        let m = instance.metadata
        let name = "\(m.sopInstanceUID).\(item.entry.id)"
        var stored = instance
        var keys: [String] = []
        for object in result.objects {
            let key: String
            switch object.role {
            case .file: key = "dicom/\(m.studyUID)/\(m.seriesUID)/\(name).dcm"
            case .tensor, .sidecar: key = "tensors/\(object.recipe ?? "default")/\(m.studyUID)/\(m.seriesUID)/\(name).\(object.role.fileExtension)"
            case .preview: key = "previews/\(object.recipe ?? "default")/\(m.studyUID)/\(m.seriesUID)/\(name).png"
            }
            do {
                try await store.put(key, fileAt: object.path, sha256: object.sha256, contentType: object.role.contentType)
            } catch {
                logger.warning("object store write failed", metadata: LogRedaction.metadata(for: error))
                return Prepared(update: LedgerUpdate(ledgerID: item.entry.id, outcome: .release(reason: PipelineOutage.Code.storeUnavailable.rawValue)),
                                keys: keys, outage: .storeUnavailable)
            }
            keys.append(key)
            stored.objects.append(InstanceObject(role: object.role, recipe: object.recipe, stored: StoredObject(key: key, sha256: object.sha256, size: object.size)))
        }
        var stages = [PipelineStage.deidentify.rawValue]
        if !instance.recipes.isEmpty || !stored.recipes.isEmpty { stages.append(PipelineStage.normalize.rawValue + ":" + stored.recipes.joined(separator: ",")) }
        stages.append(PipelineStage.store.rawValue)
        return Prepared(update: LedgerUpdate(ledgerID: item.entry.id, outcome: .catalogue(stored), stages: stages), keys: keys,
                        alternateSOPInstanceUID: result.alternateSOPInstanceUID)
    }

    static func prepared(_ item: Work, forSandboxError error: SandboxError, maxAttempts: Int) -> Prepared {
        switch error.code {
        case .shutDown:
            // The daemon is stopping: the file is taken again at the next start, nothing counted.
            return Prepared(update: LedgerUpdate(ledgerID: item.entry.id, outcome: .release(reason: error.reason)), keys: [])
        case .spawnFailed:
            return Prepared(update: LedgerUpdate(ledgerID: item.entry.id, outcome: .release(reason: PipelineOutage.Code.sandboxUnavailable.rawValue)),
                            keys: [], outage: .sandboxUnavailable)
        default:
            return prepared(item, forFailure: PipelineFailure(stage: .sandbox, error: error), maxAttempts: maxAttempts)
        }
    }

    static func prepared(_ item: Work, forFailure failure: PipelineFailure, maxAttempts: Int) -> Prepared {
        if let outage = outageReasons[failure.reason] {
            return Prepared(update: LedgerUpdate(ledgerID: item.entry.id, outcome: .release(reason: outage.rawValue)), keys: [], outage: outage)
        }
        let outcome: LedgerOutcome = retriedReasons.contains(failure.reason)
            ? .failedAttempt(stage: failure.stage.rawValue, reason: failure.reason, maxAttempts: maxAttempts)
            : .quarantine(stage: failure.stage.rawValue, reason: failure.reason)
        return Prepared(update: LedgerUpdate(ledgerID: item.entry.id, outcome: outcome, stages: [failure.stage.rawValue]), keys: [])
    }

    /// True when the source's size or modification time is no longer what was claimed (or it is gone).
    static func changedSinceClaim(_ item: Work) -> Bool {
        var info = stat()
        guard stat(item.file.path, &info) == 0 else { return true }
        let modified = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
        return Int64(info.st_size) != item.entry.size || abs(modified - item.claimedModification) > 1e-6
    }

    /// One catalogue transaction for the batch. A statement the server refuses is isolated file by file: each
    /// file is committed alone, and a file refused alone counts one failed attempt (`catalog_rejected`).
    private func commit(_ updates: [LedgerUpdate]) async throws -> [CommitOutcome] {
        let owner = self.owner, policy = conflictPolicy, arrivedAt = now()
        do {
            return try await timed(.catalog) {
                try await database {
                    let outcomes = try await $0.commitIngestBatch(updates, owner: owner, policy: policy, arrivedAt: arrivedAt)
                    Failpoint.hit(Failpoint.commit)
                    return outcomes
                }
            }
        } catch let failure as PipelineFailure where updates.count > 1 {
            logger.warning("batch commit refused; committing its files one by one", metadata: ["reason": .string(failure.reason)])
            var results: [CommitOutcome] = []
            for update in updates {
                results.append(try await commit([update]).first ?? .leaseLost)
            }
            return results
        } catch let failure as PipelineFailure {
            let update = updates[0]
            let fallback = LedgerUpdate(
                ledgerID: update.ledgerID, outcome: .failedAttempt(stage: PipelineStage.catalog.rawValue, reason: failure.reason, maxAttempts: maxAttempts),
                stages: update.stages)
            return try await database { try await $0.commitIngestBatch([fallback], owner: owner, policy: policy, arrivedAt: arrivedAt) }
        }
    }

    // MARK: Helpers

    /// Runs a database call in a transaction. An unreachable database becomes a `PipelineOutage`; a conflict a
    /// `PipelineOutage` too (the batch is taken again); a statement the server refuses a `PipelineFailure` of
    /// `stage` (`claim_rejected` or `catalog_rejected`).
    ///
    /// A call that has not returned after `databaseDeadline` is an outage too (`database_unresponsive`): a
    /// request caught by a server shutdown can otherwise wait in the client for good.
    private func database<T: Sendable>(
        _ stage: PipelineStage = .catalog, _ body: @escaping @Sendable (CatalogTransaction) async throws -> T
    ) async throws -> T {
        let catalog = self.catalog
        var conflicts = 0
        while true {
            do {
                return try await withTimeout(databaseDeadline) { try await catalog.withTransaction(body) }
            } catch is TimeoutExceeded {
                throw PipelineOutage(.databaseUnresponsive)
            } catch where DatabaseFault.of(error) == .conflict && conflicts < Self.conflictRetries {
                // A deadlock or serialization failure with another replica's transaction (claims and commits of
                // overlapping files, series or patients): the transaction was rolled back whole, so it runs again
                // at once, after a short random pause that lets the other one finish.
                conflicts += 1
                logger.debug("database conflict; transaction run again", metadata: ["stage": .string(stage.rawValue), "attempt": .stringConvertible(conflicts)])
                try await clock.sleep(for: .milliseconds(Int.random(in: 5...40) * conflicts))
                continue
            } catch {
                try Self.databaseFailure(error, stage: stage, logger: logger)
            }
        }
    }

    /// Deadlocks and serialization failures in a row run again before they count as an outage.
    static let conflictRetries = 5

    /// The pipeline's error for a failed transaction: an outage, or the statement's refusal.
    private static func databaseFailure(_ error: any Error, stage: PipelineStage, logger: Logger) throws -> Never {
        switch DatabaseFault.of(error) {
        case .unavailable: throw PipelineOutage(.databaseUnavailable)
        case .conflict: throw PipelineOutage(.databaseConflict)
        case .rejected:
            logger.warning("statement refused by the database", metadata: [
                "stage": .string(stage.rawValue), "sqlstate": .string(DatabaseFault.sqlState(of: error) ?? (error as? CatalogError)?.code.rawValue ?? "none")])
            throw PipelineFailure(stage: stage, code: stage == .claim ? .claimRejected : .catalogRejected)
        }
    }

    /// Runs `body` and records its duration as `stage`'s latency (also when it throws).
    private func timed<T>(_ stage: PipelineStage, _ body: () async throws -> T) async throws -> T {
        guard let metrics else { return try await body() }
        return try await metrics.timeStage(stage, body)
    }

    /// Runs `body` while a task renews the leases of `ids` every third of the lease.
    private func withLeasesRenewed<T: Sendable>(_ ids: [Int64], _ body: () async throws -> T) async throws -> T {
        let catalog = self.catalog, owner = self.owner, lease = self.lease, deadline = databaseDeadline, clock = self.clock, logger = self.logger
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                while true {
                    try await clock.sleep(for: lease / 3)
                    do {
                        _ = try await withTimeout(deadline, clock: clock) {
                            try await catalog.withTransaction { try await $0.renewSourceFileLeases(ids: ids, owner: owner, lease: lease) }
                        }
                    } catch {
                        // Tried again a third of the lease later; the batch's own transactions meet an outage themselves.
                        if Task.isCancelled { throw CancellationError() }
                        logger.warning("lease renewal failed", metadata: LogRedaction.metadata(for: error))
                    }
                }
            }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    /// Gives the claims back with nothing counted, when the database answers (otherwise the next claim finds
    /// them interrupted).
    private func releaseAll(_ work: [Work], reason: String) async {
        let updates = work.map { LedgerUpdate(ledgerID: $0.entry.id, outcome: .release(reason: reason)) }
        let catalog = self.catalog, owner = self.owner, policy = conflictPolicy
        _ = try? await withTimeout(databaseDeadline) {
            try await catalog.withTransaction { try await $0.commitIngestBatch(updates, owner: owner, policy: policy) }
        }
        logger.debug("batch deferred", metadata: ["reason": .string(reason), "files": .stringConvertible(work.count)])
    }

    /// Removes objects nothing in the catalogue refers to (a duplicate's or a conflict's), then their record.
    private func removeUnreferenced(_ keys: [String]) async {
        guard !keys.isEmpty else { return }
        var removed: [String] = []
        for key in keys {
            do {
                try await store.delete(key)
                removed.append(key)
            } catch {
                logger.warning("unreferenced object not removed; kept for the next start", metadata: LogRedaction.metadata(for: error))
            }
        }
        let catalog = self.catalog, done = removed
        _ = try? await withTimeout(databaseDeadline) { try await catalog.withTransaction { try await $0.objectDeletionsDone(done) } }
    }

    /// `removeLeftoverObjects` within the database deadline; what it leaves is kept for the next start (`whose`
    /// names them in the warning).
    private func removeRecordedObjects(whose: String) async {
        do { try await withTimeout(databaseDeadline) { try await removeLeftoverObjects() } } catch {
            logger.warning("\(whose) were not removed; kept for the next start", metadata: LogRedaction.metadata(for: error))
        }
    }

    /// Removes the objects recorded for removal that a daemon killed after its commit left behind.
    /// - Parameter catalog: the database to read and update the records in (default: the processor's).
    public func removeLeftoverObjects(in catalog: Catalog? = nil) async throws {
        let catalog = catalog ?? self.catalog
        while true {
            let keys = try await catalog.withTransaction { try await $0.pendingObjectDeletions(limit: 1000) }
            if keys.isEmpty { return }
            for key in keys { try await store.delete(key) }
            try await catalog.withTransaction { try await $0.objectDeletionsDone(keys) }
            if keys.count < 1000 { return }
        }
    }

    /// Streamed SHA-256 of each file, several files at once (blocking reads of files the system just wrote).
    static func digests(of files: [DiscoveredFile]) async -> [Result<FileDigest, FileDigest.Failure>] {
        var results = [Result<FileDigest, FileDigest.Failure>?](repeating: nil, count: files.count)
        let width = max(1, min(files.count, ProcessInfo.processInfo.activeProcessorCount))
        await withTaskGroup(of: (Int, Result<FileDigest, FileDigest.Failure>).self) { group in
            var next = 0
            func add() {
                let index = next
                let path = files[index].path
                group.addTask { (index, Result { try FileDigest.compute(path: path) }.mapError { $0 as? FileDigest.Failure ?? .unreadable }) }
                next += 1
            }
            while next < width { add() }
            for await (index, result) in group {
                results[index] = result
                if next < files.count { add() }
            }
        }
        return results.map { $0! }
    }
}
