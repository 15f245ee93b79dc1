// catalog-bench: 10,000 instance upserts in batches through Catalog.upsert, printed as rows/s beside two
// baselines measured in the same run on the same server: the same rows sent one transaction per row through
// the same API, and PostgreSQL COPY of the same rows into a copy of imaging.instances (indexes included).
// Usage: catalog-bench <admin database URL> [rows] [batch size]
import Catalog
import Foundation
import Logging
import PostgresNIO

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    print("usage: catalog-bench <admin database URL> [rows=10000] [batch=500]")
    exit(2)
}
let rows = arguments.count > 2 ? Int(arguments[2]) ?? 10_000 : 10_000
let batchSize = arguments.count > 3 ? Int(arguments[3]) ?? 500 : 500
let singleRows = min(rows, 1_000)
var logger = Logger(label: "catalog-bench")
logger.logLevel = .error

let admin = try DatabaseConfiguration.parse(arguments[1])
let database = "bench_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
_ = try await Catalog.withRunningClient(admin, logger: logger) { try await $0.query("CREATE DATABASE \(unescaped: database)", logger: logger) }

/// 100 instances per series, 10 series per study, one patient per study.
func batch(_ range: Range<Int>, run: String) -> CatalogBatch {
    var batch = CatalogBatch()
    var seenSeries = Set<Int>()
    for index in range {
        let seriesIndex = index / 100, studyIndex = seriesIndex / 10
        let patient = "P-\(run)-\(studyIndex)", study = "2.25.\(run).1.\(studyIndex)", series = "2.25.\(run).2.\(seriesIndex)"
        if seenSeries.insert(seriesIndex).inserted {
            batch.patients.append(PatientRecord(patientID: patient, sex: "F", ageYears: 50))
            batch.studies.append(StudyRecord(studyUID: study, patientID: patient, studyDate: "20200101"))
            batch.series.append(SeriesRecord(seriesUID: series, studyUID: study, modality: "CT", bodyPart: "CHEST",
                                             seriesNumber: 1, seriesDescription: "AXIAL", manufacturer: "ACME"))
        }
        let sop = "2.25.\(run).3.\(index)"
        batch.instances.append(InstanceRecord(
            sopInstanceUID: sop, seriesUID: series, studyUID: study, patientID: patient,
            sopClassUID: "1.2.840.10008.5.1.4.1.1.2", instanceNumber: index % 100, modality: "CT", bodyPart: "CHEST",
            studyDate: "20200101", seriesDescription: "AXIAL", manufacturer: "ACME", rows: 512, columns: 512,
            pixelSpacing: [0.7, 0.7], sliceThickness: 1.25, numberOfFrames: 1, transferSyntaxUID: "1.2.840.10008.1.2.1",
            file: StoredObject(key: "dicom/\(series)/\(sop).dcm", sha256: String(repeating: "a", count: 64), size: 524_288),
            tensor: StoredObject(key: "tensors/\(series)/\(sop).npy", sha256: String(repeating: "b", count: 64)),
            preview: StoredObject(key: "previews/\(series)/\(sop).png", sha256: String(repeating: "c", count: 64)),
            headerJSON: #"{"00080060":{"vr":"CS","Value":["CT"]},"00200013":{"vr":"IS","Value":[\#(index % 100)]},"00280010":{"vr":"US","Value":[512]}}"#))
    }
    return batch
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

func report(_ label: String, _ count: Int, _ seconds: Double) {
    let padded = label.padding(toLength: 60, withPad: " ", startingAt: 0)
    print(padded + String(format: " %7d rows %8.3f s %10.0f rows/s", count, seconds, Double(count) / seconds))
}

do {
    try await Catalog.withRunningClient(admin.with(database: database), logger: logger) { client in
        let catalog = Catalog(client: client, logger: logger)
        try await catalog.migrate()
        print("catalog-bench: \(rows) instances, batches of \(batchSize), PostgreSQL \(admin.redactedDescription)")

        let batchedStart = ContinuousClock.now
        do {
            for start in stride(from: 0, to: rows, by: batchSize) {
                try await catalog.upsert(batch(start..<min(start + batchSize, rows), run: "a"))
            }
        }
        report("Catalog.upsert, batches of \(batchSize) (insert)", rows, seconds(since: batchedStart))

        let againStart = ContinuousClock.now
        do {
            for start in stride(from: 0, to: rows, by: batchSize) {
                var resent = batch(start..<min(start + batchSize, rows), run: "a")
                for i in resent.instances.indices { resent.instances[i].seriesDescription = "AXIAL v2" }
                try await catalog.upsert(resent)
            }
        }
        report("Catalog.upsert, batches of \(batchSize) (re-sent: update)", rows, seconds(since: againStart))

        let singleStart = ContinuousClock.now
        do {
            for index in 0..<singleRows { try await catalog.upsert(batch(index..<index + 1, run: "b")) }
        }
        report("baseline: Catalog.upsert, one transaction per instance", singleRows, seconds(since: singleStart))

        // COPY of the same 10,000 rows into an indexed copy of the table (no foreign keys, no conflict handling).
        try await client.query("CREATE TABLE public.copy_target (LIKE imaging.instances INCLUDING ALL)", logger: logger)
        let all = batch(0..<rows, run: "c").instances
        var text = ""
        text.reserveCapacity(rows * 700)
        func field(_ value: String?) -> String {
            guard let value else { return "\\N" }
            return value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\t", with: "\\t")
                .replacingOccurrences(of: "\n", with: "\\n")
        }
        for r in all {
            let columns: [String?] = [
                r.sopInstanceUID, r.seriesUID, r.studyUID, r.patientID, r.sopClassUID, r.instanceNumber.map(String.init),
                r.modality, r.bodyPart, r.studyDate, r.seriesDescription, r.manufacturer, r.rows.map(String.init),
                r.columns.map(String.init), r.pixelSpacing.map { "{" + $0.map { String($0) }.joined(separator: ",") + "}" },
                r.sliceThickness.map { String($0) }, r.numberOfFrames.map(String.init), r.transferSyntaxUID,
                r.file?.key, r.file?.sha256, r.file?.size.map(String.init), r.tensor?.key, r.tensor?.sha256,
                r.preview?.key, r.preview?.sha256, r.headerJSON,
            ]
            text += columns.map(field).joined(separator: "\t") + "\n"
        }
        let copyStart = ContinuousClock.now
        do {
            try await client.withConnection { connection in
                try await connection.copyFrom(
                    table: "copy_target",
                    columns: ["sop_instance_uid", "series_uid", "study_uid", "patient_id", "sop_class_uid",
                              "instance_number", "modality", "body_part", "study_date", "series_description",
                              "manufacturer", "rows", "columns", "pixel_spacing", "slice_thickness", "number_of_frames",
                              "transfer_syntax_uid", "file_key", "file_sha256", "file_size", "tensor_key", "tensor_sha256",
                              "preview_key", "preview_sha256", "header"],
                    logger: logger
                ) { writer in
                    try await writer.write(ByteBuffer(string: text))
                }
            }
        }
        report("baseline: COPY into an indexed copy of imaging.instances", rows, seconds(since: copyStart))
        let counted = try await client.query("SELECT (SELECT count(*) FROM imaging.instances), (SELECT count(*) FROM public.copy_target)", logger: logger)
        for try await (instances, copied) in counted.decode((Int, Int).self) {
            print("rows present: imaging.instances \(instances) (expected \(rows + singleRows)), copy_target \(copied) (expected \(rows))")
        }
    }
} catch {
    print("catalog-bench failed: \(String(reflecting: error))")
}
_ = try await Catalog.withRunningClient(admin, logger: logger) {
    try await $0.query("DROP DATABASE \(unescaped: database) WITH (FORCE)", logger: logger)
}
