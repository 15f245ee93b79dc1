// The inference worker inside `dicom-etl run --with-worker`: every model the routes name is loaded at start
// (a missing or mismatched model stops the start, before any file is taken), then one InferenceWorker per
// model runs as a service of the daemon's group, on the daemon's own database client and object store. A
// serving row (`dicom-etl models promote|shadow`) switches the version it runs without a restart.
import CodedErrors
import Catalog
import Foundation
import Inference
import Ingest
import Logging
import ServiceLifecycle

/// Why the daemon's worker cannot start. Names models and routes (never patient data or file paths).
struct DaemonWorkerError: CodedError, Equatable {
    /// Machine-readable reason.
    struct Code: ErrorCode {
        let rawValue: String
        init(rawValue: String) { self.rawValue = rawValue }
        /// A route names a model version whose files are not in the models folder.
        static let modelNotFound = Code(rawValue: "model_not_found")
        /// The model's files could not be loaded (see `engineCode`).
        static let modelUnloadable = Code(rawValue: "model_unloadable")
        /// The model's metadata names another model or version than its folder.
        static let modelMetadataMismatch = Code(rawValue: "model_metadata_mismatch")
        /// The model expects another recipe than the route's.
        static let routeRecipeMismatch = Code(rawValue: "route_recipe_mismatch")
        /// The pipeline has no database client or object store to share.
        static let pipelineSharesNoDatabase = Code(rawValue: "pipeline_shares_no_database")
    }

    let code: Code
    /// The model (`name@version`) concerned, if any.
    let model: String?
    /// For `modelUnloadable`: the inference engine's code (e.g. `bad_magic`).
    let engineCode: String?

    init(_ code: Code, model: String? = nil, engineCode: String? = nil) {
        self.code = code
        self.model = model
        self.engineCode = engineCode
    }

    var description: String {
        "inference worker setup failed: \(code.rawValue)" + (engineCode.map { ":\($0)" } ?? "") + (model.map { " (model \($0))" } ?? "")
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
                guard loaded.metadata.input.recipe == route.recipe else { throw DaemonWorkerError(.routeRecipeMismatch, model: label) }
                continue
            }
            let directory = base.appendingPathComponent(route.model).appendingPathComponent(route.modelVersion)
            let model: InferenceModel
            do throws(InferenceError) { model = try InferenceModel.load(directory: directory) } catch {
                throw error.code == .unreadableFile
                    ? DaemonWorkerError(.modelNotFound, model: label)
                    : DaemonWorkerError(.modelUnloadable, model: label, engineCode: error.code.rawValue)
            }
            guard model.metadata.name == route.model, model.metadata.version == route.modelVersion else {
                throw DaemonWorkerError(.modelMetadataMismatch, model: label)
            }
            guard model.metadata.input.recipe == route.recipe else { throw DaemonWorkerError(.routeRecipeMismatch, model: label) }
            models.append(model)
        }
        return models
    }

    /// One worker service per model, on the pipeline's database and object store.
    static func services(
        models: [InferenceModel], pipeline: AssembledPipeline, configuration: InferenceWorkerConfiguration = InferenceWorkerConfiguration(),
        logger: Logger
    ) throws -> [any Service] {
        guard let catalog = pipeline.catalog, let store = pipeline.store else { throw DaemonWorkerError(.pipelineSharesNoDatabase) }
        var logger = logger
        logger[metadataKey: "component"] = "worker"
        let queue = JobQueue(client: catalog.client, logger: logger)
        return models.map { InferenceWorker(model: $0, queue: queue, store: store, configuration: configuration, logger: logger) }
    }
}
