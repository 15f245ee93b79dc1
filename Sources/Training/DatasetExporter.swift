// DatasetExporter: writes the tensors the catalogue selected as TFRecord shards of tf.train.Example, split by
// patient, laid out as TFX ImportExampleGen reads them (`Split-<name>/data_tfrecord-SSSSS-of-NNNNN`), with a
// manifest.csv and a dataset_metadata.json. Deterministic (same selection and key → same bytes) and resumable:
// each shard is written under a `.part` name and renamed, and `.export-state.json` remembers the finished shards
// of this selection, which a re-run keeps instead of rewriting.
import CodedErrors
import Catalog
import Crypto
import Foundation
import NPY
import ObjectStorage

/// Why an export failed: a machine-readable code; never a key, path or identifier in the text.
public struct ExportError: CodedError, Hashable {
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public static let invalidArgument = Code(rawValue: "invalid_argument")
        /// A tensor the catalogue names is not in the object store.
        public static let tensorNotFound = Code(rawValue: "tensor_not_found")
        /// A stored tensor's SHA-256 differs from the catalogue's.
        public static let tensorChecksumMismatch = Code(rawValue: "tensor_checksum_mismatch")
        /// A stored tensor is not a C-order little-endian `.npy` array.
        public static let unreadableTensor = Code(rawValue: "unreadable_tensor")
        /// A tensor's sidecar is missing or is not the sidecar JSON.
        public static let unreadableSidecar = Code(rawValue: "unreadable_sidecar")
        /// The output folder could not be written.
        public static let outputUnwritable = Code(rawValue: "output_unwritable")
        /// The object store failed.
        public static let storeFailed = Code(rawValue: "store_failed")
    }

    public let code: Code
    public init(_ code: Code) { self.code = code }
    public var description: String { "export error: \(code.rawValue)" }
}

/// What the exporter reports as it goes.
public struct ExportProgress: Sendable {
    public var recordsDone: Int
    public var recordsTotal: Int
    public var shardsDone: Int
    public var shardsTotal: Int
    /// Shards kept from an earlier run of the same export.
    public var shardsReused: Int
}

/// The outcome of an export.
public struct ExportSummary: Sendable {
    public var records: [SplitName: Int]
    public var patients: [SplitName: Int]
    public var shards: [SplitName: Int]
    public var shardsReused: Int
    public var recipeHashes: [String]
}

/// Writes one export.
public struct DatasetExporter: Sendable {
    public var store: any ObjectStore
    public var output: URL
    public var recipe: String
    public var predicate: String?
    public var task: String
    public var split: PatientSplit
    public var recordsPerShard: Int

    public init(store: any ObjectStore, output: URL, recipe: String, predicate: String?, task: String, split: PatientSplit,
                recordsPerShard: Int = 1024) {
        self.store = store
        self.output = output
        self.recipe = recipe
        self.predicate = predicate
        self.task = task
        self.split = split
        self.recordsPerShard = max(1, recordsPerShard)
    }

    /// The shard file name of shard `index` of `count` (TFX's `data_tfrecord-SSSSS-of-NNNNN`).
    public static func shardName(_ split: SplitName, _ index: Int, of count: Int) -> String {
        "Split-\(split.rawValue)/data_tfrecord-" + String(format: "%05d-of-%05d", index, count)
    }

    struct Shard {
        var split: SplitName
        var name: String
        var rows: [ExportRow]
    }

    struct State: Codable {
        struct FinishedShard: Codable {
            var sha256: String
            var recipeHashes: [String]
        }
        var selection: String
        var shards: [String: FinishedShard]
    }

    /// Exports `rows` (in the catalogue's order). `progress` is called after each shard.
    @discardableResult
    public func export(_ rows: [ExportRow], progress: @Sendable (ExportProgress) -> Void = { _ in }) async throws -> ExportSummary {
        let fm = FileManager.default
        do { try fm.createDirectory(at: output, withIntermediateDirectories: true) } catch { throw ExportError(.outputUnwritable) }
        var bySplit: [SplitName: [ExportRow]] = [:]
        for row in rows { bySplit[split.split(row.patientID), default: []].append(row) }
        var shards: [Shard] = []
        for name in SplitName.allCases {
            let list = bySplit[name] ?? []
            let count = max(1, (list.count + recordsPerShard - 1) / recordsPerShard)
            for i in 0..<count {
                let slice = Array(list[min(list.count, i * recordsPerShard)..<min(list.count, (i + 1) * recordsPerShard)])
                shards.append(Shard(split: name, name: Self.shardName(name, i, of: count), rows: slice))
            }
        }

        // What a finished shard of an earlier run must match to be kept.
        let selection = selectionDigest(rows)
        let statePath = output.appendingPathComponent(".export-state.json")
        var state = State(selection: selection, shards: [:])
        if let data = fm.contents(atPath: statePath.path), let old = try? JSONDecoder().decode(State.self, from: data),
           old.selection == selection {
            state = old
        } else {
            for name in SplitName.allCases { try? fm.removeItem(at: output.appendingPathComponent("Split-\(name.rawValue)")) }
        }

        var manifest: [[String]] = []
        var recipeHashes = Set<String>()
        var done = 0, reused = 0
        for (shardIndex, shard) in shards.enumerated() {
            let url = output.appendingPathComponent(shard.name)
            if let finished = state.shards[shard.name], let data = try? Data(contentsOf: url, options: .alwaysMapped),
               Self.hex(data) == finished.sha256 {
                recipeHashes.formUnion(finished.recipeHashes)
                reused += 1
            } else {
                let finished = try await write(shard, to: url)
                recipeHashes.formUnion(finished.recipeHashes)
                state.shards[shard.name] = finished
                do { try Self.write(try JSONEncoder().encode(state), to: statePath) } catch { throw ExportError(.outputUnwritable) }
            }
            for (i, row) in shard.rows.enumerated() {
                manifest.append([shard.split.rawValue, shard.name, String(i), row.patientID, row.studyUID, row.seriesUID,
                                 row.sopInstanceUID, row.modality ?? "", row.bodyPart ?? "", row.label ?? "", row.tensorSHA256])
            }
            done += shard.rows.count
            progress(ExportProgress(recordsDone: done, recordsTotal: rows.count, shardsDone: shardIndex + 1,
                                    shardsTotal: shards.count, shardsReused: reused))
        }

        let header = ["split", "shard", "record", "patient_id", "study_uid", "series_uid", "sop_instance_uid", "modality",
                      "body_part", "label", "tensor_sha256"]
        let csv = ([header] + manifest).map { $0.map(Self.csvField).joined(separator: ",") }.joined(separator: "\n") + "\n"
        var summary = ExportSummary(records: [:], patients: [:], shards: [:], shardsReused: reused, recipeHashes: recipeHashes.sorted())
        var splits: [String: Any] = [:]
        for name in SplitName.allCases {
            let list = bySplit[name] ?? []
            let count = shards.filter { $0.split == name }.count
            var labels: [String: Int] = [:]
            for row in list { labels[row.label ?? "", default: 0] += 1 }
            summary.records[name] = list.count
            summary.patients[name] = Set(list.map(\.patientID)).count
            summary.shards[name] = count
            splits[name.rawValue] = [
                "records": list.count, "patients": Set(list.map(\.patientID)).count, "shards": count,
                "pattern": "Split-\(name.rawValue)/*", "labels": labels.filter { !$0.key.isEmpty },
                "unlabelled": labels[""] ?? 0,
            ]
        }
        let metadata: [String: Any] = [
            "format": "TFRecord of tf.train.Example (uncompressed), one record per instance tensor",
            "layout": "Split-<split>/data_tfrecord-SSSSS-of-NNNNN: TFX ImportExampleGen input_config splits with these patterns",
            "recipe": ["name": recipe, "hashes": recipeHashes.sorted()],
            "selection": ["where": predicate ?? "", "task": task, "sha256": selection, "records": rows.count],
            "split": [
                "method": "HMAC-SHA256(split key, patient pseudonym): first 64 bits / 2^64 against the fractions",
                "key_id": split.keyID, "fractions": ["train": split.train, "validation": split.validation,
                                                     "test": max(0, 1 - split.train - split.validation)],
            ],
            "splits": splits,
            "features": [
                "tensor": "bytes: the tensor's elements as stored (little endian, C order)",
                "tensor/shape": "int64 list", "tensor/dtype": "bytes, e.g. float32",
                "recipe/name": "bytes", "recipe/hash": "bytes: sha256 of the recipe's canonical form (sidecar)",
                "patient_id": "bytes, pseudonym", "study_uid": "bytes, pseudonym", "series_uid": "bytes, pseudonym",
                "sop_instance_uid": "bytes, pseudonym", "modality": "bytes", "body_part": "bytes",
                "label": "bytes, the study's label of the task; absent when unknown",
            ],
            "manifest": "manifest.csv",
        ]
        do {
            try Self.write(Data(csv.utf8), to: output.appendingPathComponent("manifest.csv"))
            let json = try JSONSerialization.data(withJSONObject: metadata, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
            try Self.write(json + Data("\n".utf8), to: output.appendingPathComponent("dataset_metadata.json"))
        } catch { throw ExportError(.outputUnwritable) }
        return summary
    }

    /// Writes one shard under a `.part` name, a few records at a time (a shard never sits in memory whole), and
    /// renames it into place.
    func write(_ shard: Shard, to url: URL) async throws -> State.FinishedShard {
        let fm = FileManager.default
        let part = url.deletingLastPathComponent().appendingPathComponent("." + url.lastPathComponent + ".part")
        let handle: FileHandle
        do {
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            guard fm.createFile(atPath: part.path, contents: nil) else { throw ExportError(.outputUnwritable) }
            handle = try FileHandle(forWritingTo: part)
        } catch { throw ExportError(.outputUnwritable) }
        defer { try? handle.close() }
        var hasher = SHA256()
        var hashes = Set<String>()
        var start = 0
        while start < shard.rows.count {
            let end = min(shard.rows.count, start + 64)
            for example in try await examples(Array(shard.rows[start..<end])) {
                let framed = Data(TFRecord.frame(example.serialized()))
                hasher.update(data: framed)
                do { try handle.write(contentsOf: framed) } catch { throw ExportError(.outputUnwritable) }
                if case let .bytes(h)? = example.features["recipe/hash"], let first = h.first {
                    hashes.insert(String(decoding: first, as: UTF8.self))
                }
            }
            start = end
        }
        do {
            try handle.synchronize()
            _ = try? fm.removeItem(at: url)
            try fm.moveItem(at: part, to: url)
        } catch { throw ExportError(.outputUnwritable) }
        return State.FinishedShard(sha256: hasher.finalize().map { String(format: "%02x", $0) }.joined(), recipeHashes: hashes.sorted())
    }

    /// The examples of `rows`, in order, fetching tensors and sidecars a few at a time.
    func examples(_ rows: [ExportRow]) async throws -> [Example] {
        var out = [Example?](repeating: nil, count: rows.count)
        let width = 8
        var start = 0
        while start < rows.count {
            let end = min(rows.count, start + width)
            try await withThrowingTaskGroup(of: (Int, Example).self) { group in
                for i in start..<end {
                    let row = rows[i]
                    group.addTask { (i, try await self.example(row)) }
                }
                for try await (i, example) in group { out[i] = example }
            }
            start = end
        }
        return out.map { $0! }
    }

    func example(_ row: ExportRow) async throws -> Example {
        let data = try await fetch(row.tensorKey)
        guard Self.hex(data) == row.tensorSHA256 else { throw ExportError(.tensorChecksumMismatch) }
        guard let npy = try? NPYArray(decoding: [UInt8](data)) else { throw ExportError(.unreadableTensor) }
        guard let sidecarKey = row.sidecarKey,
              let sidecar = try? JSONSerialization.jsonObject(with: try await fetch(sidecarKey)) as? [String: Any],
              let hash = sidecar["recipe_hash"] as? String else { throw ExportError(.unreadableSidecar) }
        var features: [String: Feature] = [
            "tensor": .bytes([npy.data]),
            "tensor/shape": .int64s(npy.shape.map(Int64.init)),
            "tensor/dtype": .string(npy.dtype.name),
            "recipe/name": .string(recipe),
            "recipe/hash": .string(hash),
            "patient_id": .string(row.patientID),
            "study_uid": .string(row.studyUID),
            "series_uid": .string(row.seriesUID),
            "sop_instance_uid": .string(row.sopInstanceUID),
            "modality": .string(row.modality ?? ""),
            "body_part": .string(row.bodyPart ?? ""),
        ]
        if let label = row.label { features["label"] = .string(label) }
        return Example(features: features)
    }

    func fetch(_ key: String) async throws -> Data {
        do { return try await store.get(key) } catch let error as ObjectStoreError where error.code == .notFound {
            throw ExportError(.tensorNotFound)
        } catch {
            throw ExportError(.storeFailed)
        }
    }

    /// Digest of what the export holds: parameters and every row's identity, tensor and label.
    func selectionDigest(_ rows: [ExportRow]) -> String {
        var h = SHA256()
        let parameters = [recipe, predicate ?? "", task, split.keyID, "\(split.train)", "\(split.validation)", "\(recordsPerShard)"]
        for p in parameters { h.update(data: Data((p + "\u{1}").utf8)) }
        for r in rows {
            h.update(data: Data([r.patientID, r.sopInstanceUID, r.tensorSHA256, r.label ?? "\u{0}"].joined(separator: "\u{1}").utf8 + [2]))
        }
        return h.finalize().map { String(format: "%02x", $0) }.joined()
    }

    static func hex(_ data: Data) -> String { SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() }

    static func write(_ data: Data, to url: URL) throws {
        let part = url.deletingLastPathComponent().appendingPathComponent("." + url.lastPathComponent + ".part")
        try data.write(to: part)
        _ = try? FileManager.default.removeItem(at: url)
        try FileManager.default.moveItem(at: part, to: url)
    }

    static func csvField(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
            ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}
