// ModelRegistry: registered model versions (the files a worker loads from the object store), which version of
// a model is served and which runs beside it as a shadow, the shadow's diagnosis rows, and the comparison of
// the two versions' rows (agreement, and AUC where labels exist).
import Foundation
import PostgresNIO

/// A model version as `models register` records it.
public struct ModelRegistration: Sendable, Hashable {
    public var record: ModelRecord
    /// Content hash of the input recipe the model was trained on.
    public var recipeHash: String?
    public var weightsKey: String
    public var weightsSHA256: String
    public var metadataKey: String
    /// Largest |difference| between the Swift forward pass and the model's reference outputs.
    public var referenceMaxAbsDiff: Double

    public init(record: ModelRecord, recipeHash: String?, weightsKey: String, weightsSHA256: String, metadataKey: String,
                referenceMaxAbsDiff: Double) {
        self.record = record
        self.recipeHash = recipeHash
        self.weightsKey = weightsKey
        self.weightsSHA256 = weightsSHA256
        self.metadataKey = metadataKey
        self.referenceMaxAbsDiff = referenceMaxAbsDiff
    }
}

/// A registered version's files, as a worker needs them.
public struct RegisteredModel: Sendable, Hashable {
    public var model: ModelRef
    public var weightsKey: String
    public var weightsSHA256: String
    public var metadataKey: String
}

/// Which versions of a model the workers run.
public struct ModelServing: Sendable, Hashable {
    public var modelName: String
    public var servedVersion: String
    public var shadowVersion: String?

    public init(modelName: String, servedVersion: String, shadowVersion: String? = nil) {
        self.modelName = modelName
        self.servedVersion = servedVersion
        self.shadowVersion = shadowVersion
    }
}

/// One version's figures in a comparison.
public struct VersionFigures: Sendable, Hashable {
    public var version: String
    public var shadow: Bool
    /// Rows of this version among the compared instances.
    public var rows: Int
    /// Rows whose study has a label of the task.
    public var labelled: Int
    /// AUC of P(positive class) against the labels (nil without both classes).
    public var auc: Double?
    /// Fraction of labelled rows whose label equals the study's.
    public var accuracy: Double?
}

/// Served against shadow on the same jobs and instances.
public struct ModelComparison: Sendable, Hashable {
    public var modelName: String
    /// Instances both versions diagnosed in the same job.
    public var paired: Int
    /// Of those, how many got the same label.
    public var agreeing: Int
    public var meanAbsoluteProbabilityDifference: Double?
    public var served: VersionFigures
    public var shadow: VersionFigures
}

/// A row of inference.models.
public struct ModelVersionRow: Sendable, Hashable {
    public var model: ModelRef
    public var inputRecipe: String
    public var classes: [String]
    /// True when `models register` stored its files (a worker can load it from the store).
    public var registered: Bool
    public var referenceMaxAbsDiff: Double?
}

extension CatalogTransaction {
    /// The rows of inference.models (of one model, when named), by name and version.
    public func modelVersions(_ name: String? = nil) async throws -> [ModelVersionRow] {
        let rows = try await connection.query("""
            SELECT name, version, input_recipe, classes::text, weights_key IS NOT NULL, reference_max_abs_diff
            FROM inference.models WHERE \(name == nil) OR name = \(name ?? "") ORDER BY name, version
            """, logger: logger)
        var out: [ModelVersionRow] = []
        for try await (n, v, recipe, classes, registered, diff) in rows.decode((String, String, String, String, Bool, Double?).self) {
            let decoded = (try? JSONDecoder().decode([String].self, from: Data(classes.utf8))) ?? []
            out.append(ModelVersionRow(model: ModelRef(name: n, version: v), inputRecipe: recipe, classes: decoded,
                                       registered: registered, referenceMaxAbsDiff: diff))
        }
        return out
    }

    /// Records (or re-records) a registered version with its files and checks.
    public func registerModelVersion(_ r: ModelRegistration) async throws {
        let classes = String(decoding: try JSONEncoder().encode(r.record.classes), as: UTF8.self)
        try await connection.query("""
            INSERT INTO inference.models (name, version, input_recipe, classes, threshold, recipe_hash, weights_key,
                                          weights_sha256, metadata_key, reference_max_abs_diff, registered_at)
            VALUES (\(r.record.model.name), \(r.record.model.version), \(r.record.inputRecipe), \(classes)::jsonb,
                    \(r.record.threshold), \(r.recipeHash), \(r.weightsKey), \(r.weightsSHA256), \(r.metadataKey),
                    \(r.referenceMaxAbsDiff), now())
            ON CONFLICT (name, version) DO UPDATE
            SET input_recipe = EXCLUDED.input_recipe, classes = EXCLUDED.classes, threshold = EXCLUDED.threshold,
                recipe_hash = EXCLUDED.recipe_hash, weights_key = EXCLUDED.weights_key,
                weights_sha256 = EXCLUDED.weights_sha256, metadata_key = EXCLUDED.metadata_key,
                reference_max_abs_diff = EXCLUDED.reference_max_abs_diff, registered_at = now()
            """, logger: logger)
    }

    /// The registered files of a version, or nil when it was never registered with files.
    public func registeredModel(_ model: ModelRef) async throws -> RegisteredModel? {
        let rows = try await connection.query("""
            SELECT weights_key, weights_sha256, metadata_key FROM inference.models
            WHERE name = \(model.name) AND version = \(model.version) AND weights_key IS NOT NULL
            """, logger: logger)
        for try await (weights, sha, metadata) in rows.decode((String, String, String).self) {
            return RegisteredModel(model: model, weightsKey: weights, weightsSHA256: sha, metadataKey: metadata)
        }
        return nil
    }

    /// The serving row of a model, or nil when none was set (workers then run the version they were started with).
    public func serving(_ modelName: String) async throws -> ModelServing? {
        let rows = try await connection.query("""
            SELECT served_version, shadow_version FROM inference.model_serving WHERE model_name = \(modelName)
            """, logger: logger)
        for try await (served, shadow) in rows.decode((String, String?).self) {
            return ModelServing(modelName: modelName, servedVersion: served, shadowVersion: shadow)
        }
        return nil
    }

    /// Every serving row.
    public func servingRows() async throws -> [ModelServing] {
        let rows = try await connection.query("""
            SELECT model_name, served_version, shadow_version FROM inference.model_serving ORDER BY model_name
            """, logger: logger)
        var out: [ModelServing] = []
        for try await (name, served, shadow) in rows.decode((String, String, String?).self) {
            out.append(ModelServing(modelName: name, servedVersion: served, shadowVersion: shadow))
        }
        return out
    }

    /// Serves `version` (a registered one). With `asShadow`, runs it beside the served version instead; a
    /// model with no served version yet cannot have a shadow. Throws `invalidArgument` for an unregistered version.
    /// - Returns: the serving row after the change.
    @discardableResult
    public func setServing(_ model: ModelRef, asShadow: Bool) async throws -> ModelServing {
        guard try await registeredModel(model) != nil else { throw CatalogError(.invalidArgument) }
        let current = try await lockedServing(model.name)
        if asShadow {
            guard let current, current.servedVersion != model.version else { throw CatalogError(.invalidArgument) }
            try await connection.query("""
                UPDATE inference.model_serving SET shadow_version = \(model.version), updated_at = now()
                WHERE model_name = \(model.name)
                """, logger: logger)
            try await servingEvent(model.name, "shadow", model.version, previous: current.servedVersion)
            return ModelServing(modelName: model.name, servedVersion: current.servedVersion, shadowVersion: model.version)
        }
        // Promoting the shadow (or any registered version) clears the shadow when it is the promoted version.
        let shadow = current?.shadowVersion == model.version ? nil : current?.shadowVersion
        try await connection.query("""
            INSERT INTO inference.model_serving (model_name, served_version, shadow_version)
            VALUES (\(model.name), \(model.version), \(shadow))
            ON CONFLICT (model_name) DO UPDATE
            SET served_version = EXCLUDED.served_version, shadow_version = EXCLUDED.shadow_version, updated_at = now()
            """, logger: logger)
        try await servingEvent(model.name, current == nil ? "serve" : "promote", model.version, previous: current?.servedVersion)
        return ModelServing(modelName: model.name, servedVersion: model.version, shadowVersion: shadow)
    }

    /// Stops running a shadow beside the served version.
    public func clearShadow(_ modelName: String) async throws {
        guard let current = try await lockedServing(modelName) else { throw CatalogError(.invalidArgument) }
        try await connection.query("""
            UPDATE inference.model_serving SET shadow_version = NULL, updated_at = now() WHERE model_name = \(modelName)
            """, logger: logger)
        try await servingEvent(modelName, "unshadow", current.shadowVersion, previous: current.servedVersion)
    }

    private func lockedServing(_ modelName: String) async throws -> ModelServing? {
        let rows = try await connection.query("""
            SELECT served_version, shadow_version FROM inference.model_serving WHERE model_name = \(modelName) FOR UPDATE
            """, logger: logger)
        for try await (served, shadow) in rows.decode((String, String?).self) {
            return ModelServing(modelName: modelName, servedVersion: served, shadowVersion: shadow)
        }
        return nil
    }

    private func servingEvent(_ name: String, _ action: String, _ version: String?, previous: String?) async throws {
        try await connection.query("""
            INSERT INTO inference.serving_events (model_name, action, version, previous_served)
            VALUES (\(name), \(action), \(version), \(previous))
            """, logger: logger)
    }

    /// Writes a shadow version's rows; a row its job already wrote for that version is kept as it is.
    public func insertShadowDiagnoses(_ diagnoses: [DiagnosisRecord]) async throws {
        try await insert(diagnoses, into: "inference.shadow_diagnoses", onConflict: "(job_id, sop_instance_uid, model_version)")
    }

    /// Served against shadow rows of `modelName` written by the same jobs for the same instances, with each
    /// version's AUC and accuracy against the study labels of `task` (P of `positiveClass`).
    /// - Parameters:
    ///   - servedVersion, shadowVersion: the versions compared (default: the serving row's).
    public func compareModels(_ modelName: String, servedVersion: String, shadowVersion: String, task: String,
                              positiveClass: String) async throws -> ModelComparison {
        let rows = try await connection.query("""
            SELECT d.label, (d.probabilities->>\(positiveClass))::float8, s.label, (s.probabilities->>\(positiveClass))::float8,
                   l.label
            FROM inference.diagnoses d
            JOIN inference.shadow_diagnoses s ON s.job_id = d.job_id AND s.sop_instance_uid IS NOT DISTINCT FROM d.sop_instance_uid
                 AND s.model_name = d.model_name AND s.model_version = \(shadowVersion)
            JOIN imaging.series se ON se.series_uid = d.series_uid
            LEFT JOIN inference.labels l ON l.study_uid = se.study_uid AND l.task = \(task)
            WHERE d.model_name = \(modelName) AND d.model_version = \(servedVersion)
            """, logger: logger)
        var paired = 0, agreeing = 0, differenceSum = 0.0
        var served: [(Double, String, String)] = [], shadow: [(Double, String, String)] = []
        for try await (dLabel, dP, sLabel, sP, truth) in rows.decode((String, Double?, String, Double?, String?).self) {
            paired += 1
            if dLabel == sLabel { agreeing += 1 }
            if let dP, let sP { differenceSum += abs(dP - sP) }
            if let truth {
                served.append((dP ?? .nan, dLabel, truth))
                shadow.append((sP ?? .nan, sLabel, truth))
            }
        }
        func figures(_ version: String, _ isShadow: Bool, _ labelled: [(Double, String, String)]) -> VersionFigures {
            let scores = labelled.map(\.0), positives = labelled.map { $0.2 == positiveClass }
            let accuracy = labelled.isEmpty ? nil : Double(labelled.filter { $0.1 == $0.2 }.count) / Double(labelled.count)
            return VersionFigures(version: version, shadow: isShadow, rows: paired, labelled: labelled.count,
                                  auc: Self.auc(scores: scores, positives: positives), accuracy: accuracy)
        }
        return ModelComparison(
            modelName: modelName, paired: paired, agreeing: agreeing,
            meanAbsoluteProbabilityDifference: paired == 0 ? nil : differenceSum / Double(paired),
            served: figures(servedVersion, false, served), shadow: figures(shadowVersion, true, shadow))
    }

    /// Area under the ROC curve by the rank-sum statistic (tied scores share their mean rank); nil without
    /// both classes or with a missing score.
    static func auc(scores: [Double], positives: [Bool]) -> Double? {
        let p = positives.filter { $0 }.count, n = positives.count - p
        guard p > 0, n > 0, !scores.contains(where: \.isNaN) else { return nil }
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var ranks = [Double](repeating: 0, count: scores.count)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
            for k in i...j { ranks[order[k]] = Double(i + j) / 2 + 1 }
            i = j + 1
        }
        let rankSum = zip(ranks, positives).filter(\.1).reduce(0) { $0 + $1.0 }
        return (rankSum - Double(p * (p + 1)) / 2) / Double(p * n)
    }
}
