// The inference worker inside `dicom-etl run --with-worker`: every model the routes name is loaded at start
// (a missing or mismatched model stops the start, before any file is taken), then one InferenceWorker per
// model runs as a service of the daemon's group, on the daemon's own database client and object store. A
// serving row (`dicom-etl models promote|shadow`) switches the version it runs without a restart.
import Catalog
import Foundation
import Inference
import Ingest
import Logging
import ServiceLifecycle

/// Why the daemon's worker cannot start. Names models and routes (never patient data or file paths).
struct DaemonWorkerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Machine-readable reason, e.g. `model_not_found`.
    let reason: String
    /// The model (`name@version`) concerned, if any.
    let model: String?

    init(_ reason: String, model: String? = nil) {
        self.reason = reason
        self.model = model
    }

    var description: String {
        "inference worker setup failed: \(reason)" + (model.map { " (model \($0))" } ?? "")
    }
}

/// Builds the daemon's inference workers.
enum DaemonWorkers {
    /// Loads every model and version `routes` name from `<modelsDirectory>/<model>/<version>/`, checking that
    /// its metadata names the same model and version and that its input contract is the route's recipe.
    static func loadModels(routes: SeriesRoutes, modelsDirectory: String) throws -> [InferenceModel] {
        let base = URL(fileURLWithPath: modelsDirectory).standardizedFileURL
        var models: [InferenceModel] = []
        for route in routes.routes {
            let reference = ModelRef(name: route.model, version: route.modelVersion)
            let label = "\(route.model)@\(route.modelVersion)"
            if let loaded = models.first(where: { ModelRef(name: $0.metadata.name, version: $0.metadata.version) == reference }) {
                guard loaded.metadata.input.recipe == route.recipe else { throw DaemonWorkerError("route_recipe_mismatch", model: label) }
                continue
            }
            let directory = base.appendingPathComponent(route.model).appendingPathComponent(route.modelVersion)
            let model: InferenceModel
            do throws(InferenceError) { model = try InferenceModel.load(directory: directory) } catch {
                throw DaemonWorkerError(error.code == .unreadableFile ? "model_not_found" : "model_unloadable:\(error.code.rawValue)", model: label)
            }
            guard model.metadata.name == route.model, model.metadata.version == route.modelVersion else {
                throw DaemonWorkerError("model_metadata_mismatch", model: label)
            }
            guard model.metadata.input.recipe == route.recipe else { throw DaemonWorkerError("route_recipe_mismatch", model: label) }
            models.append(model)
        }
        return models
    }

    /// One worker service per model, on the pipeline's database and object store.
    static func services(
        models: [InferenceModel], pipeline: AssembledPipeline, configuration: InferenceWorkerConfiguration = InferenceWorkerConfiguration(),
        logger: Logger
    ) throws -> [any Service] {
        guard let catalog = pipeline.catalog, let store = pipeline.store else { throw DaemonWorkerError("pipeline_shares_no_database") }
        var logger = logger
        logger[metadataKey: "component"] = "worker"
        let queue = JobQueue(client: catalog.client, logger: logger)
        return models.map { InferenceWorker(model: $0, queue: queue, store: store, configuration: configuration, logger: logger) }
    }
}
