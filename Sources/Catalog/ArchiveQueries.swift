// ArchiveQueries: the reads behind QIDO-RS and WADO-RS over the de-identified catalogue. Every read runs in a
// transaction under `SET LOCAL ROLE analyst`, so the database itself keeps these answers to de-identified data.
// Matching (exact, wildcard, date range, UID list) runs on the de-identified header (DICOM JSON) of a
// representative instance: the first of the study or series by series, instance number and UID.
import Foundation
import Logging
import PostgresNIO

/// A group role the server takes for one read (see schemas/011_serving.sql).
public enum DatabaseRole: String, Sendable, CaseIterable {
    /// De-identified archive: imaging and inference.
    case analyst
    /// Diagnoses joined to the original identifiers, through `clinical.diagnoses`.
    case clinician
    /// The audit of identified reads.
    case `operator`
}

/// One attribute condition of a search.
public struct AttributeFilter: Sendable, Hashable {
    /// How a value matches.
    public enum Match: Sendable, Hashable {
        /// Equal to the text (for a person name: its alphabetic group, case-insensitively).
        case exact(String)
        /// A pattern with `*` (any run) and `?` (one character).
        case wildcard(String)
        /// Equal to one of the values (a UID list).
        case anyOf([String])
        /// Between the bounds, inclusive, compared as text (DA `YYYYMMDD`, TM `HHMMSS`); a nil bound is open.
        case range(from: String?, to: String?)
    }

    /// The attribute as a DICOM JSON key: 8 upper-case hex digits, e.g. `00100010`.
    public var tag: String
    /// True for PN attributes: the alphabetic component group is compared, case-insensitively.
    public var isPersonName: Bool
    public var match: Match

    public init(tag: String, isPersonName: Bool = false, match: Match) {
        self.tag = tag
        self.isPersonName = isPersonName
        self.match = match
    }
}

/// A QIDO search at one level, optionally inside a study or series.
public struct ArchiveSearch: Sendable, Hashable {
    public var studyUID: String?
    public var seriesUID: String?
    public var filters: [AttributeFilter]
    /// The header attributes (DICOM JSON keys) each match returns; nil for the whole header.
    public var attributes: [String]?
    /// At most this many results (1…10,000).
    public var limit: Int
    public var offset: Int

    public init(
        studyUID: String? = nil, seriesUID: String? = nil, filters: [AttributeFilter] = [], attributes: [String]? = nil, limit: Int = 100,
        offset: Int = 0
    ) {
        self.studyUID = studyUID
        self.seriesUID = seriesUID
        self.filters = filters
        self.attributes = attributes
        self.limit = limit
        self.offset = offset
    }
}

/// A study found by a search: its representative header and what the catalogue counts for it.
public struct ArchiveStudy: Sendable, Hashable {
    public var studyUID: String
    /// The de-identified header of the study's first instance (DICOM JSON text), only `attributes` when given.
    public var headerJSON: String
    public var modalities: [String]
    public var seriesCount: Int
    public var instanceCount: Int
}

/// A series found by a search.
public struct ArchiveSeries: Sendable, Hashable {
    public var studyUID: String
    public var seriesUID: String
    /// The de-identified header of the series' first instance.
    public var headerJSON: String
    public var instanceCount: Int
}

/// An instance of the archive: where its object is and its de-identified header.
public struct ArchiveInstance: Sendable, Hashable {
    public var studyUID: String
    public var seriesUID: String
    public var sopInstanceUID: String
    public var instanceNumber: Int?
    public var headerJSON: String
    public var transferSyntaxUID: String?
    public var numberOfFrames: Int?
    /// The de-identified DICOM object in the store.
    public var fileKey: String?
}

/// One recipe's tensor of an instance, for stacking a series.
public struct ArchiveTensor: Sendable, Hashable {
    public var sopInstanceUID: String
    public var instanceNumber: Int?
    public var recipe: String
    public var tensorKey: String
}

/// The attribute columns the hierarchy keeps apart from the header.
enum HierarchyTag {
    static let studyUID = "0020000D"
    static let seriesUID = "0020000E"
    static let sopInstanceUID = "00080018"
    static let modality = "00080060"
    static let modalitiesInStudy = "00080061"
    static let patientID = "00100020"
}

extension Catalog {
    /// Runs `body` in a read transaction as `role`.
    func reading<Result: Sendable>(as role: DatabaseRole, _ body: (PostgresConnection) async throws -> Result) async throws -> Result {
        try await inTransaction(client, logger: logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "SET LOCAL ROLE \"\(role.rawValue)\""), logger: logger)
            return try await body(connection)
        }
    }

    /// Studies matching `search`, newest study date first. The page of studies is chosen first (on the typed
    /// columns, and on the representative header only when a filter needs it); headers and counts are then read for
    /// that page alone.
    public func searchStudies(_ search: ArchiveSearch) async throws -> [ArchiveStudy] {
        var sql = SQLBuilder()
        var conditions: [String] = []
        var needsHeader = false, needsModalities = false
        if let studyUID = search.studyUID { conditions.append("s.study_uid = \(sql.bind(studyUID))") }
        for filter in search.filters {
            switch (filter.tag, filter.match) {
            case (HierarchyTag.studyUID, _): conditions.append(sql.column("s.study_uid", filter.match))
            // The catalogue's patient_id is the header's (pseudonymous) PatientID, and it is indexed.
            case (HierarchyTag.patientID, .exact), (HierarchyTag.patientID, .anyOf): conditions.append(sql.column("s.patient_id", filter.match))
            case (HierarchyTag.modalitiesInStudy, _):
                needsModalities = true
                conditions.append(sql.arrayColumn("m.modalities", filter.match))
            default:
                needsHeader = true
                conditions.append(sql.header("r.header", filter))
            }
        }
        let page = sql.page(limit: search.limit, offset: search.offset)
        let header = sql.picked("r.header", search.attributes)
        let representative = """
            SELECT header FROM imaging.instances i WHERE i.study_uid = s.study_uid
            ORDER BY i.series_uid, i.instance_number NULLS LAST, i.sop_instance_uid LIMIT 1
            """
        let query = sql.query("""
            WITH page AS (
                SELECT s.study_uid, s.study_date FROM imaging.studies s
                \(needsHeader ? "CROSS JOIN LATERAL (\(representative)) r" : "")
                \(needsModalities ? "CROSS JOIN LATERAL (SELECT array_agg(DISTINCT i.modality) AS modalities FROM imaging.instances i WHERE i.study_uid = s.study_uid) m" : "")
                \(whereClause(conditions))
                ORDER BY s.study_date DESC NULLS LAST, s.study_uid
                \(page))
            SELECT s.study_uid, \(header), COALESCE(agg.modalities, '{}'), agg.series_count, agg.instance_count
            FROM page s
            CROSS JOIN LATERAL (\(representative)) r
            CROSS JOIN LATERAL (
                SELECT array_agg(DISTINCT i.modality ORDER BY i.modality) FILTER (WHERE i.modality IS NOT NULL) AS modalities,
                       count(DISTINCT i.series_uid)::int AS series_count, count(*)::int AS instance_count
                FROM imaging.instances i WHERE i.study_uid = s.study_uid) agg
            ORDER BY s.study_date DESC NULLS LAST, s.study_uid
            """)
        return try await reading(as: .analyst) { connection in
            var studies: [ArchiveStudy] = []
            for try await (uid, header, modalities, series, instances) in try await connection.query(query, logger: logger)
                .decode((String, String, [String], Int, Int).self)
            {
                studies.append(ArchiveStudy(studyUID: uid, headerJSON: header, modalities: modalities, seriesCount: series, instanceCount: instances))
            }
            return studies
        }
    }

    /// Series matching `search` (inside `search.studyUID` when given), by study, then series number.
    public func searchSeries(_ search: ArchiveSearch) async throws -> [ArchiveSeries] {
        var sql = SQLBuilder()
        var conditions: [String] = []
        if let studyUID = search.studyUID { conditions.append("se.study_uid = \(sql.bind(studyUID))") }
        if let seriesUID = search.seriesUID { conditions.append("se.series_uid = \(sql.bind(seriesUID))") }
        for filter in search.filters {
            switch filter.tag {
            case HierarchyTag.studyUID: conditions.append(sql.column("se.study_uid", filter.match))
            case HierarchyTag.seriesUID: conditions.append(sql.column("se.series_uid", filter.match))
            case HierarchyTag.modality: conditions.append(sql.column("se.modality", filter.match))
            default: conditions.append(sql.header("r.header", filter))
            }
        }
        let header = sql.picked("r.header", search.attributes)
        let query = sql.finish("""
            SELECT se.study_uid, se.series_uid, \(header),
                   (SELECT count(*)::int FROM imaging.instances i WHERE i.series_uid = se.series_uid)
            FROM imaging.series se
            CROSS JOIN LATERAL (
                SELECT header FROM imaging.instances i WHERE i.series_uid = se.series_uid
                ORDER BY i.instance_number NULLS LAST, i.sop_instance_uid LIMIT 1) r
            \(whereClause(conditions))
            ORDER BY se.study_uid, se.series_number NULLS LAST, se.series_uid
            """, limit: search.limit, offset: search.offset)
        return try await reading(as: .analyst) { connection in
            var found: [ArchiveSeries] = []
            for try await (study, series, header, count) in try await connection.query(query, logger: logger)
                .decode((String, String, String, Int).self)
            {
                found.append(ArchiveSeries(studyUID: study, seriesUID: series, headerJSON: header, instanceCount: count))
            }
            return found
        }
    }

    /// Instances matching `search` (inside its study and series when given), by series and instance number.
    /// - Parameter sopInstanceUID: only this instance.
    public func searchInstances(_ search: ArchiveSearch, sopInstanceUID: String? = nil) async throws -> [ArchiveInstance] {
        var sql = SQLBuilder()
        var conditions: [String] = []
        if let studyUID = search.studyUID { conditions.append("i.study_uid = \(sql.bind(studyUID))") }
        if let seriesUID = search.seriesUID { conditions.append("i.series_uid = \(sql.bind(seriesUID))") }
        if let sopInstanceUID { conditions.append("i.sop_instance_uid = \(sql.bind(sopInstanceUID))") }
        for filter in search.filters {
            switch filter.tag {
            case HierarchyTag.studyUID: conditions.append(sql.column("i.study_uid", filter.match))
            case HierarchyTag.seriesUID: conditions.append(sql.column("i.series_uid", filter.match))
            case HierarchyTag.sopInstanceUID: conditions.append(sql.column("i.sop_instance_uid", filter.match))
            case HierarchyTag.modality: conditions.append(sql.column("i.modality", filter.match))
            default: conditions.append(sql.header("i.header", filter))
            }
        }
        let header = sql.picked("i.header", search.attributes)
        let query = sql.finish("""
            SELECT i.study_uid, i.series_uid, i.sop_instance_uid, i.instance_number, \(header),
                   i.transfer_syntax_uid,
                   i.number_of_frames, i.file_key
            FROM imaging.instances i
            \(whereClause(conditions))
            ORDER BY i.study_uid, i.series_uid, i.instance_number NULLS LAST, i.sop_instance_uid
            """, limit: search.limit, offset: search.offset)
        return try await reading(as: .analyst) { connection in
            var found: [ArchiveInstance] = []
            for try await (study, series, sop, number, header, syntax, frames, key) in try await connection.query(query, logger: logger)
                .decode((String, String, String, Int?, String, String?, Int?, String?).self)
            {
                found.append(ArchiveInstance(
                    studyUID: study, seriesUID: series, sopInstanceUID: sop, instanceNumber: number, headerJSON: header,
                    transferSyntaxUID: syntax, numberOfFrames: frames, fileKey: key))
            }
            return found
        }
    }

    /// The tensors of a series' instances for one recipe (every recipe when nil), by instance number.
    public func seriesTensors(studyUID: String, seriesUID: String, recipe: String?) async throws -> [ArchiveTensor] {
        try await reading(as: .analyst) { connection in
            let rows = try await connection.query("""
                SELECT t.sop_instance_uid, i.instance_number, t.recipe, t.tensor_key
                FROM imaging.tensors t JOIN imaging.instances i USING (sop_instance_uid)
                WHERE i.study_uid = \(studyUID) AND i.series_uid = \(seriesUID) AND (\(recipe)::text IS NULL OR t.recipe = \(recipe))
                ORDER BY t.recipe, i.instance_number NULLS LAST, t.sop_instance_uid
                """, logger: logger)
            var found: [ArchiveTensor] = []
            for try await (sop, number, recipe, key) in rows.decode((String, Int?, String, String).self) {
                found.append(ArchiveTensor(sopInstanceUID: sop, instanceNumber: number, recipe: recipe, tensorKey: key))
            }
            return found
        }
    }
}

private func whereClause(_ conditions: [String]) -> String {
    conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
}

/// Builds a statement whose values are all bound parameters; only fixed SQL text and `$n` placeholders are
/// written into it.
struct SQLBuilder {
    private var bindings = PostgresBindings()
    private var count = 0

    /// A placeholder for `value`.
    mutating func bind(_ value: String) -> String {
        bindings.append(value)
        count += 1
        return "$\(count)"
    }

    mutating func bind(_ values: [String]) -> String {
        bindings.append(values)
        count += 1
        return "$\(count)::text[]"
    }

    mutating func bind(_ value: Int) -> String {
        bindings.append(value)
        count += 1
        return "$\(count)"
    }

    /// The header as text, only the members named by `keys` when given.
    mutating func picked(_ header: String, _ keys: [String]?) -> String {
        guard let keys else { return "\(header)::text" }
        if keys.isEmpty { return "'{}'::text" }
        return "(SELECT COALESCE(jsonb_object_agg(e.key, e.value), '{}'::jsonb) FROM jsonb_each(\(header)) AS e "
            + "WHERE e.key = ANY(\(bind(keys))))::text"
    }

    /// A condition on a text column.
    mutating func column(_ column: String, _ match: AttributeFilter.Match) -> String {
        switch match {
        case .exact(let value): return "\(column) = \(bind(value))"
        case .wildcard(let pattern): return "\(column) LIKE \(bind(likePattern(pattern))) ESCAPE '\\'"
        case .anyOf(let values): return "\(column) = ANY(\(bind(values)))"
        case .range(let from, let to): return rangeCondition(column, from, to)
        }
    }

    /// A condition on a text array column (ModalitiesInStudy): any element matches.
    mutating func arrayColumn(_ column: String, _ match: AttributeFilter.Match) -> String {
        "EXISTS (SELECT 1 FROM unnest(\(column)) AS m(v) WHERE \(self.column("m.v", match)))"
    }

    /// A condition on an attribute of a DICOM JSON header: any of its values matches.
    mutating func header(_ header: String, _ filter: AttributeFilter) -> String {
        let values = "jsonb_array_elements(CASE WHEN jsonb_typeof(\(header) -> \(bind(filter.tag)) -> 'Value') = 'array' "
            + "THEN \(header) -> $\(count) -> 'Value' ELSE '[]'::jsonb END) AS a(v)"
        let text: String
        if filter.isPersonName {
            text = "upper(CASE WHEN jsonb_typeof(a.v) = 'object' THEN a.v ->> 'Alphabetic' ELSE a.v #>> '{}' END)"
            var upper = filter
            switch filter.match {
            case .exact(let value): upper.match = .exact(value.uppercased())
            case .wildcard(let value): upper.match = .wildcard(value.uppercased())
            default: break
            }
            return "EXISTS (SELECT 1 FROM \(values) WHERE \(column(text, upper.match)))"
        }
        text = "(a.v #>> '{}')"
        return "EXISTS (SELECT 1 FROM \(values) WHERE \(column(text, filter.match)))"
    }

    private mutating func rangeCondition(_ column: String, _ from: String?, _ to: String?) -> String {
        var parts: [String] = []
        if let from { parts.append("\(column) >= \(bind(from))") }
        // An upper bound is inclusive at its own precision: 20200131 takes every time on that day.
        if let to {
            let placeholder = bind(to)
            parts.append("left(\(column), char_length(\(placeholder))) <= \(placeholder)")
        }
        return parts.isEmpty ? "true" : "(" + parts.joined(separator: " AND ") + ")"
    }

    /// `LIMIT … OFFSET …` with both bound.
    mutating func page(limit: Int, offset: Int) -> String {
        "LIMIT \(bind(max(1, min(limit, 10_000)))) OFFSET \(bind(max(0, offset)))"
    }

    /// The statement with its bindings.
    func query(_ sql: String) -> PostgresQuery {
        PostgresQuery(unsafeSQL: sql, binds: bindings)
    }

    /// The statement with LIMIT and OFFSET bound.
    mutating func finish(_ sql: String, limit: Int, offset: Int) -> PostgresQuery {
        let limitPlaceholder = bind(max(1, min(limit, 10_000)))
        let offsetPlaceholder = bind(max(0, offset))
        return PostgresQuery(unsafeSQL: sql + "\nLIMIT \(limitPlaceholder) OFFSET \(offsetPlaceholder)", binds: bindings)
    }
}

/// A DICOM wildcard (`*`, `?`) as a LIKE pattern with `\` escapes.
func likePattern(_ pattern: String) -> String {
    var out = ""
    for character in pattern {
        switch character {
        case "*": out += "%"
        case "?": out += "_"
        case "%", "_", "\\": out += "\\" + String(character)
        default: out.append(character)
        }
    }
    return out
}
