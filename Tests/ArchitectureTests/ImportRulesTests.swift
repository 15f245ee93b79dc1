// The import rules of ARCHITECTURE.md hold for Sources/, and the checker finds a forbidden import in a broken copy.
import Foundation
import Testing

/// The repository root: three levels above this file (Tests/ArchitectureTests/ImportRulesTests.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

@Suite struct ImportRulesTests {
    @Test func sourcesFollowTheRules() throws {
        let violations = try checkImports(root: repositoryRoot)
        #expect(violations.isEmpty, "\(violations.map(\.description).joined(separator: "\n"))")
    }

    @Test func everySourcesFolderHasOneRuleAndOnlyCatalogTalksToPostgres() throws {
        let markdown = try String(contentsOf: repositoryRoot.appendingPathComponent("ARCHITECTURE.md"), encoding: .utf8)
        let rules = try ImportRules.parse(markdown: markdown)
        let folders = try FileManager.default.contentsOfDirectory(atPath: repositoryRoot.appendingPathComponent("Sources").path)
            .filter { !$0.hasPrefix(".") }
        #expect(Set(rules.allowed.keys) == Set(folders))
        #expect(rules.allowed["Catalog"]?.contains("PostgresNIO") == true)
        for (target, modules) in rules.allowed where target != "Catalog" {
            #expect(!modules.contains("PostgresNIO"), "\(target) may import PostgresNIO")
        }
    }

    @Test func reportsAForbiddenImportInABrokenCopy() throws {
        let root = try temporaryCopy()
        defer { try? FileManager.default.removeItem(at: root) }
        let bad = root.appendingPathComponent("Sources/Ingest/Bad.swift")
        try "// A file that reaches past Catalog.\nimport Foundation\n@preconcurrency import PostgresNIO\n".write(to: bad, atomically: true, encoding: .utf8)
        #expect(try checkImports(root: root) == [
            .forbidden(file: "Sources/Ingest/Bad.swift", line: 3, target: "Ingest", module: "PostgresNIO"),
        ])
    }

    @Test func reportsATargetWithoutARule() throws {
        let root = try temporaryCopy()
        defer { try? FileManager.default.removeItem(at: root) }
        let folder = root.appendingPathComponent("Sources/Unruled")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try "import Foundation\n".write(to: folder.appendingPathComponent("A.swift"), atomically: true, encoding: .utf8)
        #expect(try checkImports(root: root) == [.missingRule(target: "Unruled")])
    }

    @Test func readsEveryFormOfImport() {
        let source = """
            // import Commented
            import A
            @preconcurrency import B
            @_implementationOnly import C
            import struct D.Thing
            public import E
            @testable import F.Sub
            /* import InBlockComment
               import StillComment */
            let script = \"""
            import InString
            \"""
            func g() {}
            """
        #expect(imports(inSwiftSource: source).map(\.module) == ["A", "B", "C", "D", "E", "F"])
        #expect(imports(inSwiftSource: source).map(\.line) == [2, 3, 4, 5, 6, 7])
    }

    /// A copy of ARCHITECTURE.md and Sources/ in a new temporary folder.
    func temporaryCopy() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("architecture-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        for item in ["ARCHITECTURE.md", "Sources"] {
            try FileManager.default.copyItem(at: repositoryRoot.appendingPathComponent(item), to: root.appendingPathComponent(item))
        }
        return root
    }
}
