// ResultsRoutes: the model's results for clinicians, with the original patient and study identifiers, as JSON
// and as FHIR R4 DiagnosticReport (+ Observation); only `clinician` tokens. Every answer that carries identified
// data is written to the audit (who, what, when) in the same database transaction as the read. The preview of a
// diagnosis is de-identified pixels and is not audited. The audit itself: `GET /audit`, `operator` tokens only.
import Catalog
import Foundation
import Hummingbird
import HummingbirdCore

struct ResultsRoutes: ServerRoutes {
    static let readers: Set<Role> = [.clinician]

    func register(on router: Router<ServerContext>, services: ArchiveServices) {
        let results = Results(services: services)
        let readers = Self.readers
        router.get("/diagnoses") { request, context in
            let principal = try context.require(readers)
            return try await results.search(request, context: context, principal: principal, fixed: DiagnosisFilter())
        }
        router.get("/diagnoses/studies/:study") { request, context in
            let principal = try context.require(readers)
            // The study UID is the original one here: it is checked for shape, not looked up in the archive.
            return try await results.search(request, context: context, principal: principal, fixed: DiagnosisFilter(studyUID: try uid(context, "study")))
        }
        router.get("/diagnoses/:id") { request, context in
            let principal = try context.require(readers)
            return try await results.one(request, context: context, principal: principal, id: try diagnosisID(context), fhir: false)
        }
        router.get("/diagnoses/:id/preview") { _, context in
            _ = try context.require(readers)
            return try await results.preview(id: try diagnosisID(context))
        }
        router.get("/fhir/DiagnosticReport") { request, context in
            let principal = try context.require(readers)
            return try await results.search(request, context: context, principal: principal, fixed: DiagnosisFilter(), fhir: true)
        }
        router.get("/fhir/DiagnosticReport/:id") { request, context in
            let principal = try context.require(readers)
            return try await results.one(request, context: context, principal: principal, id: try diagnosisID(context), fhir: true)
        }
    }
}

private func diagnosisID(_ context: ServerContext) throws(ServingError) -> Int64 {
    guard let text = context.parameters.get("id"), let id = Int64(text), id > 0 else { throw .badRequest("id") }
    return id
}

struct Results: Sendable {
    let services: ArchiveServices
    static let parameters: Set<String> = ["patient", "study", "accession", "model", "model_version", "label", "since", "until", "limit", "offset", "_format"]

    /// The filter a query names, over `fixed` (the path's own filter).
    static func filter(_ query: FlatDictionary<Substring, Substring>, fixed: DiagnosisFilter) throws(ServingError) -> (DiagnosisFilter, [String: String], Bool?) {
        var filter = fixed
        var given: [String: String] = [:]
        var fhir: Bool?
        for (rawName, rawValue) in query {
            let name = String(rawName).removingPercentEncoding ?? String(rawName), value = String(rawValue)  // values arrive decoded
            guard parameters.contains(name) else { throw .badRequest(name) }
            guard !value.isEmpty, value.count <= 256 else { throw .badRequest(name) }
            given[name] = value
            switch name {
            case "patient": filter.patientID = value
            case "study": filter.studyUID = value
            case "accession": filter.accessionNumber = value
            case "model": filter.modelName = value
            case "model_version": filter.modelVersion = value
            case "label": filter.label = value
            case "since": filter.since = try date(value, name)
            case "until": filter.until = try date(value, name, endOfDay: true)
            case "limit":
                guard let limit = Int(value), (1...1000).contains(limit) else { throw .badRequest(name) }
                filter.limit = limit
            case "offset":
                guard let offset = Int(value), offset >= 0 else { throw .badRequest(name) }
                filter.offset = offset
            case "_format":
                switch value.lowercased() {
                case "json": fhir = false
                case "fhir", "application/fhir+json": fhir = true
                default: throw .badRequest(name)
                }
            default: break
            }
        }
        return (filter, given, fhir)
    }

    /// `YYYY-MM-DD` (the day's start; with `endOfDay`, the next day's start) or an ISO 8601 date-time.
    static func date(_ text: String, _ name: String, endOfDay: Bool = false) throws(ServingError) -> Date {
        let formatter = ISO8601DateFormatter()
        if text.count == 10 {
            formatter.formatOptions = [.withFullDate]
            guard let day = formatter.date(from: text) else { throw .badRequest(name) }
            return endOfDay ? day.addingTimeInterval(86_400) : day
        }
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let date = formatter.date(from: text) else { throw .badRequest(name) }
        return date
    }

    /// FHIR when asked by `_format` or by an Accept header naming `application/fhir+json` first.
    static func wantsFHIR(_ request: Request, format: Bool?, default fhir: Bool) -> Bool {
        if let format { return format }
        for range in MediaRange.parse(request.headers[.accept]) {
            if range.type == "application/fhir+json" { return true }
            if range.type == "application/json" { return false }
        }
        return fhir
    }

    func audit(_ request: Request, _ context: ServerContext, _ principal: Principal, _ parameters: [String: String]) -> AuditContext {
        AuditContext(
            principal: principal.name, role: principal.role.rawValue, action: "GET \(request.uri.path)", parameters: parameters,
            client: context.peer)
    }

    func search(_ request: Request, context: ServerContext, principal: Principal, fixed: DiagnosisFilter, fhir: Bool = false) async throws -> Response {
        let (filter, given, format) = try Self.filter(request.uri.queryParameters, fixed: fixed)
        let rows = try await services.catalog.readDiagnoses(filter, audit: audit(request, context, principal, given))
        if Self.wantsFHIR(request, format: format, default: fhir) {
            return try fhirResponse(FHIR.bundle(rows))
        }
        let page = DiagnosisPage(diagnoses: rows.map(DiagnosisJSON.init), limit: filter.limit, offset: filter.offset)
        return try jsonResponse(page)
    }

    func one(_ request: Request, context: ServerContext, principal: Principal, id: Int64, fhir: Bool) async throws -> Response {
        let (_, given, format) = try Self.filter(FlatDictionary(request.uri.queryParameters.filter { $0.key == "_format" }), fixed: DiagnosisFilter())
        let rows = try await services.catalog.readDiagnoses(DiagnosisFilter(diagnosisID: id, limit: 1), audit: audit(request, context, principal, given))
        guard let row = rows.first else { throw ServingError.notFound }
        if Self.wantsFHIR(request, format: format, default: fhir) { return try fhirResponse(FHIR.diagnosticReport(row)) }
        return try jsonResponse(DiagnosisJSON(row))
    }

    func preview(id: Int64) async throws -> Response {
        guard let key = try await services.catalog.previewKey(diagnosisID: id) else { throw ServingError.notFound }
        let bytes = try await services.store.get(key)
        return Response(status: .ok, headers: [.contentType: "image/png", .cacheControl: "private, max-age=3600"],
                        body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    private func jsonResponse(_ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                        body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    private func fhirResponse(_ object: [String: Any]) throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return Response(status: .ok, headers: [.contentType: "application/fhir+json", .cacheControl: "no-store"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// A page of diagnoses in the JSON form.
struct DiagnosisPage: Encodable {
    let diagnoses: [DiagnosisJSON]
    let limit: Int
    let offset: Int
}

/// One diagnosis in the JSON form.
struct DiagnosisJSON: Encodable {
    struct Patient: Encodable { let id: String?, name: String? }
    struct Study: Encodable { let uid: String?, accession_number: String?, date_shifted: String? }
    struct Series: Encodable { let uid: String?, modality: String?, body_part: String?, description: String? }
    struct Model: Encodable { let name: String, version: String }

    let id: Int64
    let patient: Patient
    let study: Study
    let series: Series
    let instance_uid: String?
    let model: Model
    let label: String
    let probabilities: [String: Double]
    let threshold: Double?
    let created_at: Date
    /// The path of the de-identified preview image.
    let preview: String

    init(_ row: IdentifiedDiagnosis) {
        id = row.id
        patient = Patient(id: row.patientID, name: row.patientName)
        study = Study(uid: row.studyUID, accession_number: row.accessionNumber, date_shifted: row.shiftedStudyDate)
        series = Series(uid: row.seriesUID, modality: row.modality, body_part: row.bodyPart, description: row.seriesDescription)
        instance_uid = row.sopInstanceUID
        model = Model(name: row.modelName, version: row.modelVersion)
        label = row.label
        probabilities = row.probabilities
        threshold = row.threshold
        created_at = row.createdAt
        preview = "/diagnoses/\(row.id)/preview"
    }
}

/// `GET /audit`: the audit of identified reads, newest first (`operator` tokens only; read as the database role
/// `operator`). Filters: `principal`, `since`, `limit`, `offset`.
struct AuditRoutes: ServerRoutes {
    func register(on router: Router<ServerContext>, services: ArchiveServices) {
        router.get("/audit") { request, context in
            _ = try context.require([.operator])
            let query = request.uri.queryParameters
            var principal: String?, since: Date?, limit = 100, offset = 0
            for (rawName, rawValue) in query {
                let name = String(rawName).removingPercentEncoding ?? String(rawName), value = String(rawValue)  // values arrive decoded
                switch name {
                case "principal": principal = value
                case "since": since = try Results.date(value, name)
                case "limit":
                    guard let number = Int(value), (1...1000).contains(number) else { throw ServingError.badRequest(name) }
                    limit = number
                case "offset":
                    guard let number = Int(value), number >= 0 else { throw ServingError.badRequest(name) }
                    offset = number
                default: throw ServingError.badRequest(name)
                }
            }
            let records = try await services.catalog.auditRecords(principal: principal, since: since, limit: limit, offset: offset)
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            encoder.outputFormatting = [.sortedKeys]
            let body = try encoder.encode(records.map(AuditJSON.init))
            return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                            body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
    }
}

struct AuditJSON: Encodable {
    let id: Int64, at: Date, principal: String, role: String, action: String, parameters: [String: String]
    let diagnosis_ids: [Int64], result_count: Int, client: String?

    init(_ record: AuditRecord) {
        id = record.id; at = record.at; principal = record.principal; role = record.role; action = record.action
        parameters = record.parameters; diagnosis_ids = record.diagnosisIDs; result_count = record.resultCount; client = record.client
    }
}
