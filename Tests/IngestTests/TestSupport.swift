// Helpers of the Ingest tests: temporary folders, files, polling for a condition.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Catalog
@testable import Ingest
import Logging
import ObjectStorage
import Sandbox

/// A fresh folder under the system temporary folder, removed by `remove()`.
struct TemporaryFolder {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "/ingest-test-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        path = URL(fileURLWithPath: String(cString: made)).standardizedFileURL.path
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    @discardableResult
    func write(_ relative: String, bytes: [UInt8] = Array("data".utf8), modifiedSecondsAgo: Double? = nil) throws -> String {
        let full = path + "/" + relative
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: full))
        if let age = modifiedSecondsAgo {
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -age)], ofItemAtPath: full)
        }
        return full
    }

    func exists(_ relative: String) -> Bool {
        FileManager.default.fileExists(atPath: path + "/" + relative)
    }
}

/// Polls `condition` every 10 ms until it holds or `seconds` pass; returns whether it held.
func eventually(within seconds: Double = 10, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

let testLogger: Logger = {
    var logger = Logger(label: "ingest-tests", factory: { _ in SwiftLogNoOpLogHandler() })
    logger.logLevel = .critical
    return logger
}()

func makeFile(_ path: String, root: String, size: Int64 = 4) -> DiscoveredFile {
    let relative = path.hasPrefix(root + "/") ? String(path.dropFirst(root.count + 1)) : path
    return DiscoveredFile(
        path: path, relativePath: relative, size: size, modificationTime: Date(), pathHash: PathHasher(secret: [1]).hash(relative),
        discoveredAt: Date())
}

/// A processor on the repository's routes, basic profile and recipes with the world's key, staging its outputs in
/// `store`'s staging folder named `owner`.
func makeProcessor(
    _ world: DaemonEndToEndTests.World, catalog: Catalog, store: FilesystemObjectStore, sandbox: SandboxPool,
    owner: String = "test", lease: Duration = .seconds(60), conflictPolicy: UIDConflictPolicy = .quarantine,
    metrics: IngestMetrics? = nil
) throws -> IngestProcessor {
    let root = DaemonEndToEndTests.packageRoot.path
    guard let staging = try store.stagingDirectory(named: owner) else { throw POSIXError(.ENOENT) }
    return IngestProcessor(
        catalog: catalog, store: store, sandbox: sandbox,
        inputs: .init(routesFile: root + "/etl/routes.yaml", profileFile: root + "/etl/deidentify/basic.yaml", keyFile: world.key,
                      recipesDirectory: root + "/etl/normalize"),
        stagingDirectory: staging, owner: owner, lease: lease, conflictPolicy: conflictPolicy, metrics: metrics, logger: testLogger)
}
