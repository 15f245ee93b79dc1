// The import rules of ARCHITECTURE.md and a checker of Sources/ against them: a function over a repository root,
// so the tests run it on the project and on a broken copy.
import Foundation

/// Which modules each target may import, as the table between the `import-rules` markers of ARCHITECTURE.md says.
struct ImportRules: Equatable {
    /// Allowed modules (project targets and external modules) by target.
    var allowed: [String: Set<String>]
    /// Modules every target may import (the `*` row).
    var everywhere: Set<String>

    static let begin = "<!-- import-rules:begin -->"
    static let end = "<!-- import-rules:end -->"

    struct ParseError: Error, CustomStringConvertible {
        let description: String
    }

    /// Parses the rows `| `Target` | does | project targets | external modules |` between the markers.
    static func parse(markdown: String) throws -> ImportRules {
        guard let start = markdown.range(of: begin), let stop = markdown.range(of: end, range: start.upperBound..<markdown.endIndex) else {
            throw ParseError(description: "ARCHITECTURE.md has no \(begin) … \(end) table")
        }
        var rules = ImportRules(allowed: [:], everywhere: [])
        for line in markdown[start.upperBound..<stop.lowerBound].split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("|") else { continue }
            let cells = trimmed.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
                .map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count == 4 else { throw ParseError(description: "rule row without 4 cells: \(trimmed)") }
            let target = cells[0].replacingOccurrences(of: "`", with: "")
            if target == "Target" || target.allSatisfy({ $0 == "-" || $0 == " " }) { continue }
            let modules = Set(list(cells[2]) + list(cells[3]))
            if target == "*" {
                rules.everywhere.formUnion(modules)
            } else {
                guard rules.allowed[target] == nil else { throw ParseError(description: "two rows for \(target)") }
                rules.allowed[target] = modules
            }
        }
        return rules
    }

    private static func list(_ cell: String) -> [String] {
        cell.replacingOccurrences(of: "`", with: "").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && $0 != "—" && $0 != "-" }
    }
}

/// One `import` a file makes.
struct ImportStatement: Equatable {
    var module: String
    var line: Int
}

/// The modules a Swift source imports, with their lines: `import X`, `@preconcurrency import X`,
/// `@_implementationOnly import X`, `public import X`, `import struct X.Y`, `import X.Submodule` (module X).
/// Lines inside block comments and multi-line string literals are skipped.
func imports(inSwiftSource text: String) -> [ImportStatement] {
    let pattern = #"^\s*(?:@[A-Za-z_][A-Za-z0-9_]*(?:\([^)]*\))?\s+)*(?:(?:public|package|internal|fileprivate|private)\s+)?import\s+(?:(?:struct|class|enum|protocol|typealias|func|var|let|actor)\s+)?([A-Za-z_][A-Za-z0-9_]*)"#
    let regex = try! NSRegularExpression(pattern: pattern)
    var found: [ImportStatement] = []
    for (index, line) in codeLines(of: text) {
        let range = NSRange(line.startIndex..., in: line)
        if let match = regex.firstMatch(in: line, range: range), let module = Range(match.range(at: 1), in: line) {
            found.append(ImportStatement(module: String(line[module]), line: index + 1))
        }
    }
    return found
}

/// The lines of a Swift source that are code, with their 0-based numbers: lines that begin or continue inside a
/// block comment or a multi-line string literal are left out (a line that opens one is kept).
func codeLines(of text: String) -> [(index: Int, line: String)] {
    var lines: [(index: Int, line: String)] = []
    var inBlockComment = false
    var inMultilineString = false
    for (index, line) in text.components(separatedBy: "\n").enumerated() {
        let wasSkipped = inBlockComment || inMultilineString
        if line.components(separatedBy: "\"\"\"").count % 2 == 0 { inMultilineString.toggle() }
        if !inMultilineString {
            if let open = line.range(of: "/*", options: .backwards), line.range(of: "*/", range: open.upperBound..<line.endIndex) == nil {
                inBlockComment = true
            } else if line.contains("*/") {
                inBlockComment = false
            }
        }
        if !wasSkipped { lines.append((index, line)) }
    }
    return lines
}

/// What the checker found wrong.
enum ImportViolation: Equatable, CustomStringConvertible {
    /// `file` (relative to the root), at `line`, imports `module`, which the rules do not allow `target`.
    case forbidden(file: String, line: Int, target: String, module: String)
    /// A folder of Sources/ has no rule.
    case missingRule(target: String)

    var description: String {
        switch self {
        case let .forbidden(file, line, target, module): "\(file):\(line): target \(target) may not import \(module)"
        case let .missingRule(target): "Sources/\(target): no rule in ARCHITECTURE.md"
        }
    }
}

/// Checks every Swift file under `root`/Sources/<Target>/ against the rules of `root`/ARCHITECTURE.md.
func checkImports(root: URL) throws -> [ImportViolation] {
    let markdown = try String(contentsOf: root.appendingPathComponent("ARCHITECTURE.md"), encoding: .utf8)
    let rules = try ImportRules.parse(markdown: markdown)
    let sources = root.appendingPathComponent("Sources", isDirectory: true)
    let fileManager = FileManager.default
    var violations: [ImportViolation] = []
    for target in try fileManager.contentsOfDirectory(atPath: sources.path).sorted() where !target.hasPrefix(".") {
        var isDirectory: ObjCBool = false
        let folder = sources.appendingPathComponent(target, isDirectory: true)
        guard fileManager.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
        guard let allowed = rules.allowed[target] else {
            violations.append(.missingRule(target: target))
            continue
        }
        let permitted = allowed.union(rules.everywhere).union([target])
        let walker = fileManager.enumerator(atPath: folder.path)
        var files: [String] = []
        while let relative = walker?.nextObject() as? String {
            if relative.hasSuffix(".swift") { files.append(relative) }
        }
        for relative in files.sorted() {
            let text = try String(contentsOf: folder.appendingPathComponent(relative), encoding: .utf8)
            for statement in imports(inSwiftSource: text) where !permitted.contains(statement.module) {
                violations.append(.forbidden(
                    file: "Sources/\(target)/\(relative)", line: statement.line, target: target, module: statement.module))
            }
        }
    }
    return violations
}
