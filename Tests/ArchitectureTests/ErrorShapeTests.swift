// Every error of Sources/ has the one shape (CodedError, snake_case codes), and the checker finds a broken copy.
import Foundation
import Testing

@Suite struct ErrorShapeTests {
    @Test func everyErrorIsCoded() throws {
        let violations = try checkErrorShape(root: repositoryRoot)
        #expect(violations.isEmpty, "\(violations.map(\.description).joined(separator: "\n"))")
    }

    @Test func reportsAnErrorWithoutACodeInABrokenCopy() throws {
        let root = try temporaryCopy()
        defer { try? FileManager.default.removeItem(at: root) }
        try "// An error of another shape.\nstruct Oops: Error {}\nextension Oops: CustomStringConvertible { var description: String { \"oops\" } }\n"
            .write(to: root.appendingPathComponent("Sources/Ingest/Oops.swift"), atomically: true, encoding: .utf8)
        #expect(try checkErrorShape(root: root) == [.notCoded(file: "Sources/Ingest/Oops.swift", line: 2, type: "Oops")])
    }

    @Test func reportsACodeThatIsNotSnakeCaseAndALiteralReason() throws {
        let root = try temporaryCopy()
        defer { try? FileManager.default.removeItem(at: root) }
        try """
            import CodedErrors
            struct Camel: CodedError {
                struct Code: ErrorCode {
                    let rawValue: String
                    init(rawValue: String) { self.rawValue = rawValue }
                    static let notSnake = Code(rawValue: "notSnake")
                }
                let code = Code.notSnake
                var description: String { "camel" }
            }
            let failure = PipelineFailure(stage: .parse, reason: "not_dicom")
            """.write(to: root.appendingPathComponent("Sources/Ingest/Camel.swift"), atomically: true, encoding: .utf8)
        #expect(try checkErrorShape(root: root) == [
            .literalFailureReason(file: "Sources/Ingest/Camel.swift", line: 11),
            .codeNotSnakeCase(file: "Sources/Ingest/Camel.swift", line: 6, rawValue: "notSnake"),
        ].sorted { $0.description < $1.description })
    }

    @Test func readsDeclarationsAndExtensions() {
        let source = """
            // struct Commented: Error {
            public struct A: CodedError, Hashable {
                struct Nested: Swift.Error, @unchecked Sendable {}
            }
            extension Outer.Inner: CodedError where T: Sendable {
            protocol Refines: Error {
            final class C<T>: NSObject, Error {
            """
        #expect(conformanceDeclarations(inSwiftSource: source) == [
            ConformanceDeclaration(kind: .type, name: "A", conformances: ["CodedError", "Hashable"], line: 2),
            ConformanceDeclaration(kind: .type, name: "Nested", conformances: ["Error", "Sendable"], line: 3),
            ConformanceDeclaration(kind: .extension, name: "Inner", conformances: ["CodedError"], line: 5),
            ConformanceDeclaration(kind: .protocol, name: "Refines", conformances: ["Error"], line: 6),
            ConformanceDeclaration(kind: .type, name: "C", conformances: ["NSObject", "Error"], line: 7),
        ])
        #expect(isSnakeCase("secret_file_group_or_others_access") && isSnakeCase("io") && isSnakeCase("h2_frame"))
        #expect(!isSnakeCase("camelCase") && !isSnakeCase("trailing_") && !isSnakeCase("double__underscore") && !isSnakeCase("_lead"))
        #expect(!isSnakeCase("model_unloadable:bad_magic") && !isSnakeCase(""))
    }

    /// A copy of Sources/ in a new temporary folder.
    func temporaryCopy() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("error-shape-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: repositoryRoot.appendingPathComponent("Sources"), to: root.appendingPathComponent("Sources"))
        return root
    }
}
