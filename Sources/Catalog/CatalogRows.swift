// CatalogRows: the JSON rows of the catalogue's multi-row statements, built from the typed records (an
// `InstanceRecord` of the bulk `upsert`, or an `IngestedInstance` of the daemon's batches), with the column
// names of schemas/*.sql.

enum CatalogRows {
    /// `imaging.instances` rows (columns: `CatalogTransaction.instanceColumns`) of bulk-upsert records.
    static func instances(_ records: [InstanceRecord]) -> String {
        var rows = JSONRows(capacity: records.reduce(0) { $0 + 1024 + $1.headerJSON.utf8.count })
        for r in records {
            rows.row { row in
                row.string("sop_instance_uid", r.sopInstanceUID)
                row.string("series_uid", r.seriesUID)
                row.string("study_uid", r.studyUID)
                row.string("patient_id", r.patientID)
                row.string("sop_class_uid", r.sopClassUID)
                row.int("instance_number", r.instanceNumber)
                row.string("modality", r.modality)
                row.string("body_part", r.bodyPart)
                row.string("study_date", r.studyDate)
                row.string("series_description", r.seriesDescription)
                row.string("manufacturer", r.manufacturer)
                row.int("rows", r.rows)
                row.int("columns", r.columns)
                row.doubles("pixel_spacing", r.pixelSpacing)
                row.double("slice_thickness", r.sliceThickness)
                row.int("number_of_frames", r.numberOfFrames)
                row.string("transfer_syntax_uid", r.transferSyntaxUID)
                objects(&row, file: r.file, tensor: r.tensor, preview: r.preview)
                row.json("header", r.headerJSON)
                row.string("content_sha256", nil)
            }
        }
        return rows.finished()
    }

    /// `imaging.instances` rows of instances the pipeline produced.
    static func instances(_ instances: [IngestedInstance]) -> String {
        var rows = JSONRows(capacity: instances.reduce(0) { $0 + 1024 + $1.headerJSON.utf8.count })
        for instance in instances {
            let m = instance.metadata
            let firstRecipe = instance.recipes.first
            rows.row { row in
                row.string("sop_instance_uid", m.sopInstanceUID)
                row.string("series_uid", m.seriesUID)
                row.string("study_uid", m.studyUID)
                row.string("patient_id", m.patientID)
                row.string("sop_class_uid", m.sopClassUID)
                row.int("instance_number", m.instanceNumber)
                row.string("modality", m.modality)
                row.string("body_part", m.bodyPart)
                row.string("study_date", m.studyDate)
                row.string("series_description", m.seriesDescription)
                row.string("manufacturer", m.manufacturer)
                row.int("rows", m.rows)
                row.int("columns", m.columns)
                row.doubles("pixel_spacing", m.pixelSpacing)
                row.double("slice_thickness", m.sliceThickness)
                row.int("number_of_frames", m.numberOfFrames)
                row.string("transfer_syntax_uid", m.transferSyntaxUID)
                objects(&row, file: instance.object(.file), tensor: firstRecipe.flatMap { instance.object(.tensor, recipe: $0) },
                        preview: firstRecipe.flatMap { instance.object(.preview, recipe: $0) })
                row.json("header", instance.headerJSON)
                row.string("content_sha256", instance.contentSHA256)
            }
        }
        return rows.finished()
    }

    private static func objects(_ row: inout JSONRows, file: StoredObject?, tensor: StoredObject?, preview: StoredObject?) {
        row.string("file_key", file?.key)
        row.string("file_sha256", file?.sha256)
        row.int64("file_size", file?.size)
        row.string("tensor_key", tensor?.key)
        row.string("tensor_sha256", tensor?.sha256)
        row.string("preview_key", preview?.key)
        row.string("preview_sha256", preview?.sha256)
    }

    /// `imaging.tensors` rows: every recipe of each instance.
    static func tensors(_ instances: [IngestedInstance]) -> String {
        var rows = JSONRows()
        for instance in instances {
            for recipe in instance.recipes {
                guard let tensor = instance.object(.tensor, recipe: recipe) else { continue }
                rows.row { row in
                    row.string("sop_instance_uid", instance.metadata.sopInstanceUID)
                    row.string("recipe", recipe)
                    row.string("tensor_key", tensor.key)
                    row.string("tensor_sha256", tensor.sha256)
                    row.string("sidecar_key", instance.object(.sidecar, recipe: recipe)?.key)
                    let preview = instance.object(.preview, recipe: recipe)
                    row.string("preview_key", preview?.key)
                    row.string("preview_sha256", preview?.sha256)
                }
            }
        }
        return rows.finished()
    }

    /// `imaging.patients`, `studies` and `series` rows, one per key (the last instance's values win).
    static func parents(_ instances: [IngestedInstance]) -> (patients: String, studies: String, series: String) {
        var patients = JSONRows(), studies = JSONRows(), series = JSONRows()
        for m in lastByKey(instances.map(\.metadata), \.patientID) {
            patients.row { row in
                row.string("patient_id", m.patientID)
                row.string("sex", m.sex)
                row.int("age_years", m.ageYears)
            }
        }
        for m in lastByKey(instances.map(\.metadata), \.studyUID) {
            studies.row { row in
                row.string("study_uid", m.studyUID)
                row.string("patient_id", m.patientID)
                row.string("study_date", m.studyDate)
                row.string("study_description", m.studyDescription)
                row.string("accession_pseudonym", nil)
            }
        }
        for m in lastByKey(instances.map(\.metadata), \.seriesUID) {
            series.row { row in
                row.string("series_uid", m.seriesUID)
                row.string("study_uid", m.studyUID)
                row.string("modality", m.modality)
                row.string("body_part", m.bodyPart)
                row.int("series_number", m.seriesNumber)
                row.string("series_description", m.seriesDescription)
                row.string("manufacturer", m.manufacturer)
            }
        }
        return (patients.finished(), studies.finished(), series.finished())
    }

    /// The vault's rows (original identifiers), one per pseudonym.
    static func vault(_ instances: [IngestedInstance]) -> (patients: String, studies: String, series: String, instances: String) {
        var patients = JSONRows(), studies = JSONRows(), series = JSONRows(), sops = JSONRows()
        for i in lastByKey(instances, \.metadata.patientID) {
            patients.row { row in
                row.string("patient_id", i.metadata.patientID)
                row.string("original_patient_id", i.originals.patientID)
                row.string("patient_name", i.originals.patientName)
                row.string("birth_date", i.originals.birthDate)
            }
        }
        for i in lastByKey(instances, \.metadata.studyUID) {
            studies.row { row in
                row.string("study_uid", i.metadata.studyUID)
                row.string("original_study_uid", i.originals.studyUID)
                row.string("accession_number", i.originals.accessionNumber)
            }
        }
        for i in lastByKey(instances, \.metadata.seriesUID) {
            series.row { row in
                row.string("series_uid", i.metadata.seriesUID)
                row.string("original_series_uid", i.originals.seriesUID)
            }
        }
        for i in lastByKey(instances, \.metadata.sopInstanceUID) {
            sops.row { row in
                row.string("sop_instance_uid", i.metadata.sopInstanceUID)
                row.string("original_sop_instance_uid", i.originals.sopInstanceUID)
            }
        }
        return (patients.finished(), studies.finished(), series.finished(), sops.finished())
    }

    /// The last element for each key, sorted by key (a stable lock order across concurrent writers).
    static func lastByKey<Element>(_ elements: [Element], _ key: KeyPath<Element, String>) -> [Element] {
        unique(elements, by: key)
    }
}
