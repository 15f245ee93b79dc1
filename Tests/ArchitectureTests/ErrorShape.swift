// The error shape of the project: every type of Sources/ that conforms to `Error` conforms to `CodedError`
// (Sources/CodedErrors), its codes are snake_case, and the pipeline's failures take their reasons from codes.
import Foundation

/// What the error-shape checker found wrong.
enum ErrorShapeViolation: Equatable, CustomStringConvertible {
    /// `type`, declared at `file`:`line`, conforms to `Error` (or refines it) but not to `CodedError`.
    case notCoded(file: String, line: Int, type: String)
    /// A code's raw value is not snake_case.
    case codeNotSnakeCase(file: String, line: Int, rawValue: String)
    /// A `PipelineFailure` built from a string literal instead of a code or an error.
    case literalFailureReason(file: String, line: Int)

    var description: String {
        switch self {
        case let .notCoded(file, line, type): "\(file):\(line): \(type) conforms to Error but not to CodedError"
        case let .codeNotSnakeCase(file, line, rawValue): "\(file):\(line): code \"\(rawValue)\" is not snake_case"
        case let .literalFailureReason(file, line): "\(file):\(line): PipelineFailure with a string literal reason; use a code"
        }
    }
}

/// A type, protocol or extension declaration and the names after its colon.
struct ConformanceDeclaration: Equatable {
    enum Kind: Equatable { case type, `protocol`, `extension` }
    var kind: Kind
    /// The declared name; for extensions the extended name, its last component only (`FileDigest.Failure` → `Failure`).
    var name: String
    var conformances: [String]
    var line: Int
}

/// The declarations of a Swift source that list conformances (`struct A: B, C {`, `extension A.B: C {`,
/// `protocol P: Error {`), one line each. Comment lines and multi-line string literals are skipped.
func conformanceDeclarations(inSwiftSource text: String) -> [ConformanceDeclaration] {
    let modifiers = #"(?:@[A-Za-z_][A-Za-z0-9_]*(?:\([^)]*\))?\s+)*(?:(?:public|package|internal|fileprivate|private|final|indirect|nonisolated)\s+)*"#
    let typePattern = try! NSRegularExpression(
        pattern: #"^\s*"# + modifiers + #"(struct|enum|class|actor|protocol)\s+([A-Za-z_][A-Za-z0-9_]*)(?:<[^>{]*>)?\s*:\s*([^{]+)\{"#)
    let extensionPattern = try! NSRegularExpression(
        pattern: #"^\s*"# + modifiers + #"extension\s+([A-Za-z_][A-Za-z0-9_.]*)\s*:\s*([^{]+)\{"#)
    var found: [ConformanceDeclaration] = []
    for (index, line) in codeLines(of: text) {
        if line.trimmingCharacters(in: .whitespaces).hasPrefix("//") { continue }
        let range = NSRange(line.startIndex..., in: line)
        func group(_ match: NSTextCheckingResult, _ number: Int) -> String {
            Range(match.range(at: number), in: line).map { String(line[$0]) } ?? ""
        }
        if let match = typePattern.firstMatch(in: line, range: range) {
            let kind: ConformanceDeclaration.Kind = group(match, 1) == "protocol" ? .protocol : .type
            found.append(ConformanceDeclaration(kind: kind, name: group(match, 2), conformances: conformanceNames(group(match, 3)), line: index + 1))
        } else if let match = extensionPattern.firstMatch(in: line, range: range) {
            let name = group(match, 1).split(separator: ".").last.map(String.init) ?? ""
            found.append(ConformanceDeclaration(kind: .extension, name: name, conformances: conformanceNames(group(match, 2)), line: index + 1))
        }
    }
    return found
}

/// `B, @unchecked Sendable, Swift.Error where T: C` → `["B", "Sendable", "Error"]`.
private func conformanceNames(_ list: String) -> [String] {
    let clause = list.components(separatedBy: " where ").first ?? list
    return clause.split(separator: ",").map { item in
        let words = item.split(separator: " ").filter { !$0.hasPrefix("@") }
        let name = words.last.map(String.init) ?? ""
        return name.split(separator: ".").last.map(String.init) ?? name
    }
}

/// True for `lower_case_words_1`: lower-case ASCII letters and digits, words joined by single underscores.
func isSnakeCase(_ text: String) -> Bool {
    text.range(of: #"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"#, options: .regularExpression) != nil
}

/// Checks every Swift file under `root`/Sources/ (but not `Generated/` folders) for the error shape.
func checkErrorShape(root: URL) throws -> [ErrorShapeViolation] {
    let sources = root.appendingPathComponent("Sources", isDirectory: true)
    let walker = FileManager.default.enumerator(atPath: sources.path)
    var files: [String] = []
    while let relative = walker?.nextObject() as? String {
        if relative.hasSuffix(".swift") && !relative.split(separator: "/").contains("Generated") { files.append(relative) }
    }
    let codePattern = try NSRegularExpression(pattern: #"\bCode\(rawValue:\s*"([^"]*)"\)"#)
    let literalFailurePattern = try NSRegularExpression(pattern: #"PipelineFailure\(stage:[^)]*reason:\s*""#)
    var errorTypes: [(file: String, declaration: ConformanceDeclaration)] = []
    var coded: Set<String> = ["CodedError"]   // the protocol itself refines Error
    var violations: [ErrorShapeViolation] = []
    for relative in files.sorted() {
        let file = "Sources/\(relative)"
        let text = try String(contentsOf: sources.appendingPathComponent(relative), encoding: .utf8)
        for declaration in conformanceDeclarations(inSwiftSource: text) {
            if declaration.conformances.contains("CodedError") { coded.insert(declaration.name) }
            if declaration.conformances.contains("Error") || declaration.conformances.contains("LocalizedError") {
                errorTypes.append((file, declaration))
            }
        }
        for (index, line) in text.components(separatedBy: "\n").enumerated() {
            let range = NSRange(line.startIndex..., in: line)
            for match in codePattern.matches(in: line, range: range) {
                guard let value = Range(match.range(at: 1), in: line).map({ String(line[$0]) }), !isSnakeCase(value) else { continue }
                violations.append(.codeNotSnakeCase(file: file, line: index + 1, rawValue: value))
            }
            if literalFailurePattern.firstMatch(in: line, range: range) != nil {
                violations.append(.literalFailureReason(file: file, line: index + 1))
            }
        }
    }
    for (file, declaration) in errorTypes where !coded.contains(declaration.name) {
        violations.append(.notCoded(file: file, line: declaration.line, type: declaration.name))
    }
    return violations.sorted { $0.description < $1.description }
}
