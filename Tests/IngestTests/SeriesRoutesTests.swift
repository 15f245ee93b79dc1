// Tests of SeriesRoutes: the shipped etl/routes.yaml, matching rules and rejected files.
import Foundation
import Ingest
import Testing

@Suite struct SeriesRoutesTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test func shippedRoutesSendChestRadiographsToThePneumoniaModel() throws {
        let routes = try SeriesRoutes.load(path: Self.packageRoot.appendingPathComponent("etl/routes.yaml").path)
        let chest = routes.routes(modality: "DX", bodyPart: "CHEST")
        #expect(chest.map(\.model) == ["pneumonia-cnn"])
        #expect(chest.first?.recipe == "cxr-28")
        #expect(chest.first?.quietPeriod == nil)   // the daemon's series_quiet_seconds applies
        #expect(routes.routes(modality: "cr", bodyPart: nil).count == 1)
        #expect(routes.routes(modality: "CR", bodyPart: "  ").count == 1)
        #expect(routes.routes(modality: "CR", bodyPart: "HAND").isEmpty)
        #expect(routes.routes(modality: "CT", bodyPart: "CHEST").isEmpty)
        #expect(routes.routes(modality: nil, bodyPart: "CHEST").isEmpty)
    }

    @Test func shippedRouteRecipesExistBesideTheRoutes() throws {
        let routes = try SeriesRoutes.load(path: Self.packageRoot.appendingPathComponent("etl/routes.yaml").path)
        #expect(!routes.routes.isEmpty)
        for route in routes.routes {
            #expect(!route.recipe.isEmpty && !route.model.isEmpty && !route.modelVersion.isEmpty)
        }
    }

    @Test func severalRoutesGiveDistinctRecipesAndTheLongestQuietPeriod() throws {
        let routes = try SeriesRoutes.parse(yaml: """
            routes:
              - {name: a, modalities: [CT], recipe: ct-hu-volume, model: m1, model_version: "1", quiet_seconds: 2.5}
              - {name: b, modalities: [CT, MR], recipe: ct-hu-volume, model: m2, model_version: 3}
              - {name: c, modalities: [CT], body_parts: [HEAD], recipe: other, model: m3, model_version: "1"}
            """)
        let ct = routes.routes(modality: "CT", bodyPart: "ABDOMEN")
        #expect(ct.map(\.name) == ["a", "b"])
        #expect(routes.recipes(modality: "CT", bodyPart: "HEAD") == ["ct-hu-volume", "other"])
        #expect(routes.route(named: "b")?.modelVersion == "3")
        #expect(SeriesRoutes.quietPeriod(of: ct, default: .seconds(10)) == .seconds(10))
        #expect(SeriesRoutes.quietPeriod(of: [ct[0]], default: .seconds(1)) == .milliseconds(2500))
        #expect(SeriesRoutes.quietPeriod(of: [], default: .seconds(7)) == .seconds(7))
    }

    @Test(arguments: [
        ("routes: 3", RoutesError.Code.missingKey),
        ("[1, 2]", .malformed),
        ("routes: [{name: a, recipe: r, model: m, model_version: '1'}]", .missingKey),
        ("routes: [{name: a, modalities: [], recipe: r, model: m, model_version: '1'}]", .invalidValue),
        ("routes: [{name: a, modalities: [CR], recipe: r, model: m, model_version: '1', quiet_seconds: -1}]", .invalidValue),
        ("routes: [{name: a, modalities: [CR], recipe: r, model: m, model_version: '1', colour: red}]", .invalidValue),
        ("routes: [{name: a, modalities: [CR], recipe: r, model: m}]", .missingKey),
        ("routes: [{name: a, modalities: [CR], recipe: r, model: m, model_version: '1'}, {name: a, modalities: [DX], recipe: r, model: m, model_version: '1'}]", .duplicateRoute),
        ("routes: [\n", .malformed),
    ])
    func malformedFilesAreRejectedWithATypedReason(yaml: String, code: RoutesError.Code) {
        #expect(throws: RoutesError.self) { try SeriesRoutes.parse(yaml: yaml) }
        do {
            _ = try SeriesRoutes.parse(yaml: yaml)
        } catch let error as RoutesError {
            #expect(error.code == code)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func unreadableFileIsRejected() {
        #expect(throws: RoutesError(.unreadable)) { try SeriesRoutes.load(path: "/nonexistent/routes.yaml") }
    }
}
