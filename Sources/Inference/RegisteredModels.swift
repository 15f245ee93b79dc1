// RegisteredModels: the model versions `models register` put in the object store, loaded once each on first use
// (their SHA-256 checked against the registry), and the serving plan a worker follows in a round: which version
// it serves for its model and which it runs beside it as a shadow (inference.model_serving).
import CodedErrors
import Catalog
import Crypto
import Foundation
import ObjectStorage

/// Why a registered version could not be loaded.
public struct RegisteredModelError: CodedError, Hashable {
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The version is named by the serving row but not registered with files.
        public static let notRegistered = Code(rawValue: "model_not_registered")
        /// The weights in the store differ from the SHA-256 the registry recorded.
        public static let weightsChanged = Code(rawValue: "model_weights_changed")
        /// The files could not be read from the store.
        public static let unreadable = Code(rawValue: "model_unreadable")
        /// The metadata names another model or version than the registry row.
        public static let metadataMismatch = Code(rawValue: "model_metadata_mismatch")
    }

    public let code: Code
    public init(_ code: Code) { self.code = code }
    public var description: String { "registered model error: \(code.rawValue)" }
}

/// What a worker runs in one round.
public struct ServingPlan: Sendable {
    public var served: InferenceModel
    public var shadow: InferenceModel?
    /// True when a serving row decides the version: the worker then takes its model's jobs whatever version
    /// they were queued for.
    public var fromServingRow: Bool
}

/// Loaded registered versions, by name and version.
public actor RegisteredModels {
    let store: any ObjectStore
    private var loaded: [ModelRef: InferenceModel] = [:]

    public init(store: any ObjectStore) {
        self.store = store
    }

    /// The registered version `model`, from the cache or the store.
    public func model(_ model: ModelRef, catalog: Catalog) async throws -> InferenceModel {
        if let m = loaded[model] { return m }
        let registered = try await catalog.withTransaction { try await $0.registeredModel(model) }
        guard let registered else { throw RegisteredModelError(.notRegistered) }
        let weights: Data, metadata: Data
        do {
            weights = try await store.get(registered.weightsKey)
            metadata = try await store.get(registered.metadataKey)
        } catch {
            throw RegisteredModelError(.unreadable)
        }
        guard SHA256.hex(weights) == registered.weightsSHA256 else { throw RegisteredModelError(.weightsChanged) }
        let m = try InferenceModel.load(metadata: metadata, weights: weights)
        guard m.metadata.name == model.name, m.metadata.version == model.version else {
            throw RegisteredModelError(.metadataMismatch)
        }
        loaded[model] = m
        return m
    }

    /// The plan for a worker started with `base`: the serving row of its model when there is one (the served
    /// version, `base` itself when it is that version, and the shadow), else `base` alone.
    public func plan(for base: InferenceModel, catalog: Catalog) async throws -> ServingPlan {
        let name = base.metadata.name
        guard let serving = try await catalog.withTransaction({ try await $0.serving(name) }) else {
            return ServingPlan(served: base, shadow: nil, fromServingRow: false)
        }
        func resolve(_ version: String) async throws -> InferenceModel {
            version == base.metadata.version ? base : try await model(ModelRef(name: name, version: version), catalog: catalog)
        }
        let served = try await resolve(serving.servedVersion)
        var shadow: InferenceModel?
        if let version = serving.shadowVersion { shadow = try await resolve(version) }
        return ServingPlan(served: served, shadow: shadow, fromServingRow: true)
    }
}

extension SHA256 {
    /// Lower-case hex SHA-256 of `data`.
    static func hex(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}
