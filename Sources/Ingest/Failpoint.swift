// Failpoints: named places in a batch's way (mid-sandbox, objects durable but not catalogued, catalogue
// statements run but not committed) where the crash-safety tests make the daemon SIGKILL itself, to land a
// crash exactly there. Inert unless DICOM_ETL_FAILPOINT names one: `NAME` (the first batch to get there)
// or `NAME:N` (the N-th).
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

enum Failpoint {
    /// After the first results of a batch came back from the sandbox, before the others.
    static let sandbox = "sandbox"
    /// After the batch's objects were made durable, before its catalogue transaction.
    static let durable = "durable"
    /// Inside the catalogue transaction, after its statements, before COMMIT.
    static let commit = "commit"

    private static let armed: (name: String, count: Int)? = {
        guard let value = ProcessInfo.processInfo.environment["DICOM_ETL_FAILPOINT"], !value.isEmpty else { return nil }
        let parts = value.split(separator: ":", maxSplits: 1)
        return (String(parts[0]), parts.count > 1 ? Int(parts[1]) ?? 1 : 1)
    }()
    private static let hits = Counter()

    /// Kills this process with SIGKILL when `name` is the armed failpoint and this is its N-th hit.
    static func hit(_ name: String) {
        guard let armed, armed.name == name else { return }
        if hits.increment() == armed.count { kill(getpid(), SIGKILL) }
    }

    private final class Counter: Sendable {
        private let value = Mutex(0)
        func increment() -> Int { value.withLock { $0 += 1; return $0 } }
    }
}
