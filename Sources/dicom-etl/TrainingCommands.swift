// The training loop's commands: `export` (TFRecord shards of catalogued tensors, split by patient), `labels
// import` (radiologists' labels by accession number or original study UID, resolved through the vault) and
// `models register|shadow|promote|unshadow|compare|list` (the model registry the workers follow without a restart).
import CodedErrors
import ArgumentParser
import Catalog
import Crypto
import Foundation
import Inference
import Logging
import Normalization
import ObjectStorage
import Training
#if canImport(Glibc)
import Glibc
#endif

/// Where the database and the object store are: flags, else the environment.
struct ServiceOptions: ParsableArguments {
    @Option(name: .customLong("database-url"), help: "PostgreSQL URL (default: $DICOM_ETL_DATABASE_URL).")
    var databaseURL: String?
    @Option(name: .customLong("storage-url"), help: "Object store URL, file:///… or s3://bucket/… (default: $DICOM_ETL_STORAGE_URL).")
    var storageURL: String?

    func validate() throws {
        if databaseURL == nil && ProcessInfo.processInfo.environment["DICOM_ETL_DATABASE_URL"] == nil {
            throw ValidationError("give --database-url or set DICOM_ETL_DATABASE_URL")
        }
    }

    func database() throws -> DatabaseConfiguration {
        try DatabaseConfiguration.parse(databaseURL ?? ProcessInfo.processInfo.environment["DICOM_ETL_DATABASE_URL"] ?? "")
    }

    func store() throws -> any ObjectStore {
        guard let url = storageURL ?? ProcessInfo.processInfo.environment["DICOM_ETL_STORAGE_URL"], !url.isEmpty else {
            throw ValidationError("give --storage-url or set DICOM_ETL_STORAGE_URL")
        }
        return try StorageLocation.parse(url).makeStore()
    }
}

/// Prints one JSON object on standard output (sorted keys).
func printJSON(_ object: [String: Any]) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}

/// A failure the command reports with a machine-readable reason (no patient data) and exit code 1.
struct CommandFailure: CodedError {
    /// Machine-readable reason.
    struct Code: ErrorCode {
        let rawValue: String
        init(rawValue: String) { self.rawValue = rawValue }
        /// The labels file cannot be read.
        static let unreadableFile = Code(rawValue: "unreadable_file")
        /// The labels file has no `label` column.
        static let missingLabelColumn = Code(rawValue: "missing_label_column")
        /// The labels file has neither an `accession_number` nor a `study_uid` column.
        static let missingKeyColumn = Code(rawValue: "missing_key_column")
        /// The model's files could not be loaded (see `detail`).
        static let modelUnloadable = Code(rawValue: "model_unloadable")
        /// The model's recipe is not in the recipes folder.
        static let recipeNotFound = Code(rawValue: "recipe_not_found")
        /// The recipe differs from the one the model was trained with.
        static let recipeHashMismatch = Code(rawValue: "recipe_hash_mismatch")
        /// The model's reference inputs or outputs cannot be read.
        static let referenceFilesUnreadable = Code(rawValue: "reference_files_unreadable")
        /// The reference inputs or outputs do not have the model's shapes.
        static let referenceShapeMismatch = Code(rawValue: "reference_shape_mismatch")
        /// The model's outputs on the reference inputs differ from the recorded ones (see `detail`).
        static let referenceOutputsDiffer = Code(rawValue: "reference_outputs_differ")
        /// The version is registered with other weights.
        static let versionExistsWithOtherWeights = Code(rawValue: "version_exists_with_other_weights")
        /// The model has no served version.
        static let noServedVersion = Code(rawValue: "no_served_version")
        /// The model has no shadow version to compare.
        static let noShadowToCompare = Code(rawValue: "no_shadow_to_compare")
        /// The version is not registered, or the change is not allowed in its state.
        static let notRegisteredOrNotAllowed = Code(rawValue: "not_registered_or_not_allowed")
        /// The shadow version's recipe differs from the served version's.
        static let shadowRecipeDiffers = Code(rawValue: "shadow_recipe_differs")
    }

    let code: Code
    /// A safe detail after the code: an engine's code, a difference in probabilities.
    let detail: String?

    init(_ code: Code, detail: String? = nil) {
        self.code = code
        self.detail = detail
    }

    /// The exit message: the code, then the detail or the columns a labels file needs.
    var description: String {
        if code == .missingKeyColumn { return "\(code.rawValue) (accession_number or study_uid)" }
        return code.rawValue + (detail.map { ": \($0)" } ?? "")
    }
}

// MARK: - export

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a recipe's tensors as TFRecord shards for TensorFlow, split by patient.",
        discussion: """
            Layout: OUT/Split-{train,validation,test}/data_tfrecord-SSSSS-of-NNNNN (TFX ImportExampleGen), \
            OUT/manifest.csv and OUT/dataset_metadata.json. Patients go to a split by HMAC-SHA256 of their \
            pseudonym with the split key, so no patient crosses splits and a re-run gives the same bytes. An \
            interrupted export resumes: finished shards of the same selection are kept. --where is SQL over \
            imaging.instances i, imaging.series se, imaging.studies st, imaging.patients p (and inference.labels l), \
            run read-only with your database role.
            """)

    @OptionGroup var services: ServiceOptions
    @Option(help: "Normalisation recipe whose tensors to export (e.g. cxr-28).") var recipe: String
    @Option(name: .customLong("where"), help: "SQL predicate selecting instances, e.g. \"i.modality IN ('CR','DX')\".")
    var predicate: String?
    @Option(help: "Label task to attach (inference.labels); without it no label is exported.") var task: String?
    @Option(help: "Output folder.") var out: String
    @Option(name: .customLong("split-key-file"), help: "File holding the split key (default: $DICOM_ETL_SPLIT_KEY).")
    var splitKeyFile: String?
    @Option(help: "Train, validation and test fractions.") var fractions: String = "0.8,0.1,0.1"
    @Option(name: .customLong("records-per-shard")) var recordsPerShard: Int = 1024

    func validate() throws {
        let parts = fractions.split(separator: ",").compactMap { Double($0) }
        guard parts.count == 3, parts.allSatisfy({ $0 >= 0 }), parts.reduce(0, +) > 0 else {
            throw ValidationError("--fractions needs three non-negative numbers")
        }
        guard recordsPerShard > 0 else { throw ValidationError("--records-per-shard must be positive") }
        if splitKeyFile == nil && (ProcessInfo.processInfo.environment["DICOM_ETL_SPLIT_KEY"] ?? "").isEmpty {
            throw ValidationError("give --split-key-file or set DICOM_ETL_SPLIT_KEY (keep it to reproduce the split)")
        }
    }

    func run() async throws {
        let logger = Logger(label: "dicom-etl.export")
        let key: [UInt8]
        if let splitKeyFile {
            guard let data = FileManager.default.contents(atPath: splitKeyFile), !data.isEmpty else {
                throw ValidationError("the split key file is empty or unreadable")
            }
            key = [UInt8](data)
        } else {
            key = Array((ProcessInfo.processInfo.environment["DICOM_ETL_SPLIT_KEY"] ?? "").utf8)
        }
        let f = fractions.split(separator: ",").compactMap { Double($0) }
        let split = try PatientSplit(key: key, fractions: (f[0], f[1], f[2]))
        let store = try services.store()
        let tty = isatty(2) == 1
        let started = ContinuousClock.now
        let summary = try await Catalog.withRunningClient(try services.database(), logger: logger) { client in
            let rows = try await Catalog(client: client, logger: logger).exportRows(recipe: recipe, predicate: predicate, task: task ?? "")
            let exporter = DatasetExporter(store: store, output: URL(fileURLWithPath: out), recipe: recipe, predicate: predicate,
                                           task: task ?? "", split: split, recordsPerShard: recordsPerShard)
            return try await exporter.export(rows) { p in
                let line = "export: \(p.recordsDone)/\(p.recordsTotal) records, shard \(p.shardsDone)/\(p.shardsTotal)"
                    + (p.shardsReused > 0 ? " (\(p.shardsReused) kept from an earlier run)" : "")
                FileHandle.standardError.write(Data((tty ? "\r\u{1B}[K" + line : line + "\n").utf8))
            }
        }
        if tty { FileHandle.standardError.write(Data("\n".utf8)) }
        var splits: [String: Any] = [:]
        for name in SplitName.allCases {
            splits[name.rawValue] = ["records": summary.records[name] ?? 0, "patients": summary.patients[name] ?? 0,
                                     "shards": summary.shards[name] ?? 0]
        }
        try printJSON(["recipe": recipe, "recipe_hashes": summary.recipeHashes, "splits": splits,
                       "shards_kept": summary.shardsReused, "seconds": (ContinuousClock.now - started).seconds])
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

// MARK: - labels

struct Labels: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "labels", abstract: "Import radiologists' labels.", subcommands: [Import.self])

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import",
            abstract: "Import labels from a CSV keyed by accession number or original study UID.",
            discussion: """
                The CSV has a header with a `label` column and an `accession_number` or `study_uid` column (the \
                original Study Instance UID). Keys are resolved through the vault; labels are stored per study \
                pseudonym and task in inference.labels (analysts read them by pseudonym only). All or nothing: any \
                unknown, ambiguous or contradictory row is reported by line number and nothing is imported (exit 1).
                """)

        @OptionGroup var services: ServiceOptions
        @Option(help: "What the labels answer, e.g. pneumonia.") var task: String
        @Option(help: "Who or what labelled (no patient data).") var source: String?
        @Argument(help: "The CSV file.") var file: String

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: file) else { throw CommandFailure(.unreadableFile) }
            let table = CSV.parse(String(decoding: data, as: UTF8.self))
            guard let header = table.first?.map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }),
                  let labelColumn = header.firstIndex(of: "label") else { throw CommandFailure(.missingLabelColumn) }
            let keyColumn = header.firstIndex(of: "accession_number") ?? header.firstIndex(of: "study_uid")
            guard let keyColumn else { throw CommandFailure(.missingKeyColumn) }
            let byAccession = header[keyColumn] == "accession_number"
            var entries: [(line: Int, entry: LabelEntry)] = []
            var problems: [String] = []
            for (offset, row) in table.enumerated().dropFirst() {
                let line = offset + 1
                if row.allSatisfy({ $0.trimmingCharacters(in: .whitespaces).isEmpty }) { continue }
                guard row.count > max(keyColumn, labelColumn) else { problems.append("line \(line): missing_field"); continue }
                let key = row[keyColumn].trimmingCharacters(in: .whitespaces)
                let label = row[labelColumn].trimmingCharacters(in: .whitespaces)
                guard !key.isEmpty, !label.isEmpty else { problems.append("line \(line): empty_field"); continue }
                entries.append((line, LabelEntry(key: byAccession ? .accessionNumber(key) : .originalStudyUID(key), label: label)))
            }
            let logger = Logger(label: "dicom-etl.labels")
            let importID = UUID()
            let task = self.task, source = self.source
            let (written, found) = try await Catalog.withRunningClient(try services.database(), logger: logger) { client in
                try await Catalog(client: client, logger: logger).withTransaction { t -> (Int, [String]) in
                    let resolved = try await t.resolveStudies(entries.map(\.entry.key))
                    var problems = problems
                    var byStudy: [String: (label: String, line: Int)] = [:]
                    for ((line, entry), resolution) in zip(entries, resolved) {
                        switch resolution {
                        case .unknown: problems.append("line \(line): unknown_key")
                        case .ambiguous: problems.append("line \(line): ambiguous_key")
                        case let .study(study):
                            if let earlier = byStudy[study], earlier.label != entry.label {
                                problems.append("line \(line): contradicts_line_\(earlier.line)")
                            } else if byStudy[study] == nil {
                                byStudy[study] = (entry.label, line)
                            }
                        }
                    }
                    guard problems.isEmpty else { return (0, problems) }
                    let rows = byStudy.keys.sorted().map { (studyUID: $0, label: byStudy[$0]!.label) }
                    return (try await t.upsertLabels(rows, task: task, source: source, importID: importID), [])
                }
            }
            if !found.isEmpty {
                for p in found { FileHandle.standardError.write(Data((p + "\n").utf8)) }
                try printJSON(["imported": 0, "rejected_rows": found.count, "task": task])
                throw ExitCode(1)
            }
            try printJSON(["imported": written, "task": task, "import_id": importID.uuidString.lowercased()])
        }
    }
}

/// A small RFC 4180 reader: quoted fields with doubled quotes, CRLF or LF line ends.
enum CSV {
    static func parse(_ text: String) -> [[String]] {
        var rows: [[String]] = [], row: [String] = [], field = ""
        var quoted = false, i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            if quoted {
                if c == "\"" {
                    let next = text.index(after: i)
                    if next < text.endIndex && text[next] == "\"" { field.append("\""); i = next } else { quoted = false }
                } else { field.append(c) }
            } else if c == "\"" {
                quoted = true
            } else if c == "," {
                row.append(field); field = ""
            } else if c == "\n" || c == "\r\n" || c == "\r" {
                row.append(field); rows.append(row); row = []; field = ""
            } else {
                field.append(c)
            }
            i = text.index(after: i)
        }
        if !field.isEmpty || !row.isEmpty { row.append(field); rows.append(row) }
        return rows
    }
}

// MARK: - models

struct Models: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "Register model versions, run one as a shadow, promote one: workers follow without a restart.",
        subcommands: [Register.self, Shadow.self, Unshadow.self, Promote.self, Compare.self, List.self])

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a trained model version folder and record it in inference.models.",
            discussion: """
                Checks: model_metadata.json against weights.bin, the input recipe exists (and is the recipe the model \
                was trained on, when the metadata records its hash), reference_inputs.npy through the Swift forward \
                pass equal reference_outputs.npy within 1e-4. Then puts weights.bin and model_metadata.json in the \
                object store under models/<name>/<version>/ (a version's weights never change) and records them.
                """)

        @OptionGroup var services: ServiceOptions
        @Argument(help: "Model version folder (weights.bin, model_metadata.json, reference_*.npy).") var directory: String
        @Option(name: .customLong("recipes-dir"), help: "Recipe folder (default: $DICOM_ETL_RECIPES, else etl/normalize).")
        var recipesDirectory: String?
        @Flag(help: "Serve this version (promote it).") var serve = false
        @Flag(help: "Run this version as a shadow beside the served one.") var shadow = false
        @Option(help: "Largest |Δp| allowed on the reference inputs.") var tolerance: Double = 1e-4

        func validate() throws {
            if serve && shadow { throw ValidationError("--serve and --shadow exclude each other") }
        }

        func run() async throws {
            let folder = URL(fileURLWithPath: directory)
            let model: InferenceModel
            do { model = try InferenceModel.load(directory: folder) } catch { throw CommandFailure(.modelUnloadable, detail: error.code.rawValue) }
            let m = model.metadata
            let recipe: Recipe
            do { recipe = try Recipe.load(name: m.input.recipe, directory: recipesDirectory ?? Recipe.defaultDirectory) } catch {
                throw CommandFailure(.recipeNotFound)
            }
            if let hash = m.input.recipeHash, hash != recipe.contentHash { throw CommandFailure(.recipeHashMismatch) }
            if m.input.recipeHash == nil {
                FileHandle.standardError.write(Data("warning: the metadata records no recipe_hash; the recipe cannot be checked\n".utf8))
            }
            let inputs: NpyArray, outputs: NpyArray
            do {
                inputs = try NpyArray(contentsOf: folder.appendingPathComponent("reference_inputs.npy"))
                outputs = try NpyArray(contentsOf: folder.appendingPathComponent("reference_outputs.npy"))
            } catch { throw CommandFailure(.referenceFilesUnreadable) }
            let count = inputs.shape.first ?? 0
            guard count > 0, inputs.values.count == count * model.inputSize, outputs.values.count == count * (m.output.units) else {
                throw CommandFailure(.referenceShapeMismatch)
            }
            let predicted = try model.predict(batch: inputs.values, count: count)
            let positive = m.classes.firstIndex(of: m.positiveClass) ?? 0
            var worst = 0.0
            for i in 0..<count {
                let got: [Float] = m.output.units == 1 ? [predicted[i][positive]] : predicted[i]
                for (u, p) in got.enumerated() { worst = max(worst, Double(abs(p - outputs.values[i * m.output.units + u]))) }
            }
            guard worst <= tolerance else { throw CommandFailure(.referenceOutputsDiffer, detail: "max |Δp| \(worst)") }

            let store = try services.store()
            let weights = try Data(contentsOf: folder.appendingPathComponent(InferenceModel.weightsFileName))
            let metadata = try Data(contentsOf: folder.appendingPathComponent(InferenceModel.metadataFileName))
            let prefix = "models/\(m.name)/\(m.version)/"
            let weightsSHA = weights.sha256Hex
            if let existing = try await store.head(prefix + InferenceModel.weightsFileName) {
                let stored = try await store.get(existing.key)
                guard stored.sha256Hex == weightsSHA else { throw CommandFailure(.versionExistsWithOtherWeights) }
            } else {
                try await store.put(prefix + InferenceModel.weightsFileName, data: weights, contentType: "application/octet-stream")
            }
            try await store.put(prefix + InferenceModel.metadataFileName, data: metadata, contentType: "application/json")
            let logger = Logger(label: "dicom-etl.models")
            let registration = ModelRegistration(
                record: ModelRecord(model: ModelRef(name: m.name, version: m.version), inputRecipe: m.input.recipe,
                                    classes: m.classes, threshold: Double(m.threshold)),
                recipeHash: m.input.recipeHash, weightsKey: prefix + InferenceModel.weightsFileName,
                weightsSHA256: weightsSHA, metadataKey: prefix + InferenceModel.metadataFileName, referenceMaxAbsDiff: worst)
            let serving = try await Catalog.withRunningClient(try services.database(), logger: logger) { client in
                try await Catalog(client: client, logger: logger).withTransaction { t -> ModelServing? in
                    try await t.registerModelVersion(registration)
                    if serve || shadow {
                        if shadow { try await Models.checkShadowInput(t, name: m.name, recipe: m.input.recipe) }
                        return try await t.setServing(registration.record.model, asShadow: shadow)
                    }
                    return try await t.serving(m.name)
                }
            }
            try printJSON(["registered": "\(m.name)@\(m.version)", "recipe": m.input.recipe, "recipe_hash": registration.recipeHash ?? "",
                           "reference_max_abs_diff": worst, "reference_images": count, "weights_sha256": weightsSHA,
                           "serving": Models.describe(serving)])
        }
    }

    struct Shadow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a registered version beside the served one.")
        @OptionGroup var services: ServiceOptions
        @Argument var name: String
        @Argument var version: String

        func run() async throws {
            let serving = try await Models.change(services) { t in
                let served = try await t.serving(name)
                guard served != nil else { throw CommandFailure(.noServedVersion) }
                try await Models.checkShadowInput(t, name: name, version: version)
                return try await t.setServing(ModelRef(name: name, version: version), asShadow: true)
            }
            try printJSON(["serving": Models.describe(serving)])
        }
    }

    struct Unshadow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop running a shadow version.")
        @OptionGroup var services: ServiceOptions
        @Argument var name: String

        func run() async throws {
            let serving = try await Models.change(services) { t in
                try await t.clearShadow(name)
                return try await t.serving(name)
            }
            try printJSON(["serving": Models.describe(serving)])
        }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Serve a registered version (the shadow, usually).")
        @OptionGroup var services: ServiceOptions
        @Argument var name: String
        @Argument var version: String

        func run() async throws {
            let serving = try await Models.change(services) { t in
                // The tensors the workers read are the route's recipe: a version with another input recipe needs
                // the route changed (routes.yaml, then a daemon restart), not a promotion.
                if try await t.serving(name) != nil { try await Models.checkShadowInput(t, name: name, version: version) }
                return try await t.setServing(ModelRef(name: name, version: version), asShadow: false)
            }
            try printJSON(["serving": Models.describe(serving)])
        }
    }

    struct Compare: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Served against shadow rows on the same jobs: agreement, and AUC of each where labels exist.")
        @OptionGroup var services: ServiceOptions
        @Argument var name: String
        @Option(help: "Label task to score against (inference.labels).") var task: String
        @Option(help: "Positive class whose probability is scored (default: the last class of the model).")
        var positiveClass: String?
        @Option(help: "Served version (default: the serving row's).") var served: String?
        @Option(help: "Shadow version (default: the serving row's).") var shadow: String?

        func run() async throws {
            let logger = Logger(label: "dicom-etl.models")
            let comparison = try await Catalog.withRunningClient(try services.database(), logger: logger) { client in
                try await Catalog(client: client, logger: logger).withTransaction { t -> ModelComparison in
                    let serving = try await t.serving(name)
                    guard let servedVersion = served ?? serving?.servedVersion, let shadowVersion = shadow ?? serving?.shadowVersion else {
                        throw CommandFailure(.noShadowToCompare)
                    }
                    let classes = try await t.modelVersions(name).first { $0.model.version == servedVersion }?.classes ?? []
                    let positive = positiveClass ?? classes.last
                    return try await t.compareModels(name, servedVersion: servedVersion, shadowVersion: shadowVersion,
                                                     task: task, positiveClass: positive ?? "")
                }
            }
            func figures(_ f: VersionFigures) -> [String: Any] {
                ["version": f.version, "labelled": f.labelled, "auc": f.auc ?? NSNull(), "accuracy": f.accuracy ?? NSNull()]
            }
            try printJSON([
                "model": name, "paired_instances": comparison.paired, "agreeing": comparison.agreeing,
                "agreement": comparison.paired == 0 ? NSNull() : Double(comparison.agreeing) / Double(comparison.paired) as Any,
                "mean_abs_probability_difference": comparison.meanAbsoluteProbabilityDifference ?? NSNull(),
                "served": figures(comparison.served), "shadow": figures(comparison.shadow),
            ])
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Registered versions and what is served.")
        @OptionGroup var services: ServiceOptions

        func run() async throws {
            let logger = Logger(label: "dicom-etl.models")
            let (versions, serving) = try await Catalog.withRunningClient(try services.database(), logger: logger) { client in
                try await Catalog(client: client, logger: logger).withTransaction { t in
                    (try await t.modelVersions(), try await t.servingRows())
                }
            }
            let listed: [[String: Any]] = versions.map { v in
                ["name": v.model.name, "version": v.model.version, "recipe": v.inputRecipe, "registered": v.registered,
                 "reference_max_abs_diff": v.referenceMaxAbsDiff ?? NSNull() as Any]
            }
            try printJSON(["models": listed, "serving": serving.map { Models.describe($0) }])
        }
    }

    /// Runs a serving change in one transaction.
    static func change(_ services: ServiceOptions, _ body: @escaping @Sendable (CatalogTransaction) async throws -> ModelServing?) async throws -> ModelServing? {
        let logger = Logger(label: "dicom-etl.models")
        do {
            return try await Catalog.withRunningClient(try services.database(), logger: logger) { client in
                try await Catalog(client: client, logger: logger).withTransaction(body)
            }
        } catch let error as CatalogError where error.code == .invalidArgument {
            throw CommandFailure(.notRegisteredOrNotAllowed)
        }
    }

    /// A shadow (or a promoted version) reads the served version's tensors: both must name the same input recipe.
    static func checkShadowInput(_ t: CatalogTransaction, name: String, version: String? = nil, recipe: String? = nil) async throws {
        guard let serving = try await t.serving(name) else { throw CommandFailure(.noServedVersion) }
        var recipes: [String: String] = [:]
        for v in try await t.modelVersions(name) { recipes[v.model.version] = v.inputRecipe }
        let shadowRecipe = recipe ?? version.flatMap { recipes[$0] }
        guard let shadowRecipe, shadowRecipe == recipes[serving.servedVersion] else { throw CommandFailure(.shadowRecipeDiffers) }
    }

    static func describe(_ s: ModelServing?) -> Any {
        guard let s else { return NSNull() }
        return ["model": s.modelName, "served": s.servedVersion, "shadow": s.shadowVersion ?? NSNull() as Any]
    }
}

extension Data {
    /// Lower-case hex SHA-256.
    var sha256Hex: String { SHA256.hash(data: self).map { String(format: "%02x", $0) }.joined() }
}
