// Where the real DICOM files of the tests come from: ../shared/data/dicom (301 files with a manifest)
// or, on a machine without it, the test files of pydicom's wheel (scripts/test.sh says which).
import Foundation
import TestSupport

enum Corpus {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var directory: URL? {
        TestEnvironment.hasCorpus ? URL(fileURLWithPath: TestEnvironment.corpus) : nil
    }

    /// The manifest rows (path relative to the corpus → columns), when the corpus has one.
    static var manifest: [String: [String: String]] {
        guard let directory else { return [:] }
        let url = directory.appendingPathComponent("MANIFEST.tsv")
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [:] }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        guard !lines.isEmpty else { return [:] }
        let header = lines.removeFirst().split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        var rows: [String: [String: String]] = [:]
        for line in lines {
            let cols = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            var row: [String: String] = [:]
            for (key, value) in zip(header, cols) { row[key] = value }
            // Manifest paths start with "dicom/".
            if let path = row["path"] { rows[String(path.dropFirst("dicom/".count))] = row }
        }
        return rows
    }

    /// Every regular file under the corpus, sorted by relative path (licence and README copies included:
    /// they are real non-DICOM files).
    static var files: [(relative: String, url: URL)] {
        guard let directory, let walker = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
        var out: [(String, URL)] = []
        let base = directory.standardizedFileURL.path
        for case let url as URL in walker {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
            let path = url.standardizedFileURL.path
            let relative = path.hasPrefix(base + "/") ? String(path.dropFirst(base.count + 1)) : url.lastPathComponent
            if relative == "MANIFEST.tsv" || relative.hasSuffix(".py") || relative.hasSuffix(".pyc") { continue }
            out.append((relative, url))
        }
        return out.sorted { $0.0 < $1.0 }
    }

    /// Real DICOM files by name, wherever the corpus keeps them.
    static func file(named relative: String) -> URL? {
        guard let directory else { return nil }
        for candidate in [relative, "pydicom/" + relative, URL(fileURLWithPath: relative).lastPathComponent] {
            let url = directory.appendingPathComponent(candidate)
            if FileManager.default.fileExists(atPath: url.path) { return url }
        }
        return nil
    }

    static var python: String? { ProcessInfo.processInfo.environment["DICOM_ETL_PYTHON"] }
}
