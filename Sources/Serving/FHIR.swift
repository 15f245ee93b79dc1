// FHIR: a diagnosis as a FHIR R4 DiagnosticReport for an EHR integration. The report (status `preliminary`: a
// model's output, not yet read by a person) names the patient by identifier, contains the ImagingStudy it is
// about (study UID as urn:oid, accession number), the model as a Device, and one Observation whose value is
// the probability of the label given, with every class's probability as a component.
import Catalog
import Foundation

enum FHIR {
    static let diagnosisSystem = "urn:dicom-etl:diagnosis"
    static let modelSystem = "urn:dicom-etl:model"
    static let labelSystem = "urn:dicom-etl:label"

    /// A searchset Bundle of reports.
    static func bundle(_ rows: [IdentifiedDiagnosis]) -> [String: Any] {
        [
            "resourceType": "Bundle",
            "type": "searchset",
            "total": rows.count,
            "entry": rows.map { ["resource": diagnosticReport($0), "search": ["mode": "match"]] as [String: Any] },
        ]
    }

    static func diagnosticReport(_ row: IdentifiedDiagnosis) -> [String: Any] {
        let subject = self.subject(row)
        let modelText = "\(row.modelName) \(row.modelVersion)"
        let probability = row.probabilities[row.label]
        var observation: [String: Any] = [
            "resourceType": "Observation",
            "id": "observation",
            "status": "preliminary",
            "code": ["coding": [["system": labelSystem, "code": row.label]], "text": "probability of \(row.label)"],
            "device": ["reference": "#model"],
            "interpretation": [["coding": [["system": labelSystem, "code": row.label]], "text": row.label]],
            "component": row.probabilities.sorted { $0.key < $1.key }.map { name, value in
                ["code": ["coding": [["system": labelSystem, "code": name]], "text": "probability of \(name)"], "valueQuantity": quantity(value)]
                    as [String: Any]
            },
            "issued": timestamp(row.createdAt),
        ]
        if let subject { observation["subject"] = subject }
        if let probability { observation["valueQuantity"] = quantity(probability) }
        if let threshold = row.threshold { observation["referenceRange"] = [["text": "decision threshold \(threshold)"]] }

        var series: [String: Any] = [
            "modality": ["system": "http://dicom.nema.org/resources/ontology/DCM", "code": nonEmpty(row.modality) ?? "OT"],
        ]
        if let uid = nonEmpty(row.seriesUID) { series["uid"] = uid }
        if let bodyPart = nonEmpty(row.bodyPart) { series["bodySite"] = ["display": bodyPart] }
        if let description = nonEmpty(row.seriesDescription) { series["description"] = description }
        var study: [String: Any] = ["resourceType": "ImagingStudy", "id": "study", "status": "available", "series": [series]]
        var studyIdentifiers: [[String: Any]] = []
        if let uid = nonEmpty(row.studyUID) { studyIdentifiers.append(["system": "urn:dicom:uid", "value": "urn:oid:\(uid)"]) }
        if let accession = nonEmpty(row.accessionNumber) {
            studyIdentifiers.append([
                "type": ["coding": [["system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"]]], "value": accession,
            ])
        }
        if !studyIdentifiers.isEmpty { study["identifier"] = studyIdentifiers }
        study["subject"] = subject ?? ["display": "unknown patient"]

        let device: [String: Any] = [
            "resourceType": "Device", "id": "model",
            "deviceName": [["name": row.modelName, "type": "model-name"]],
            "version": [["value": row.modelVersion]],
        ]
        var report: [String: Any] = [
            "resourceType": "DiagnosticReport",
            "id": String(row.id),
            "identifier": [["system": diagnosisSystem, "value": String(row.id)]],
            "status": "preliminary",
            "category": [["coding": [["system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"]]]],
            "code": ["coding": [["system": modelSystem, "code": row.modelName, "display": modelText]], "text": modelText],
            "issued": timestamp(row.createdAt),
            "imagingStudy": [["reference": "#study"]],
            "result": [["reference": "#observation"]],
            "conclusion": probability.map { "\(row.label) (p = \(String(format: "%.3f", $0)))" } ?? row.label,
            "conclusionCode": [["coding": [["system": labelSystem, "code": row.label]], "text": row.label]],
            "contained": [study, device, observation],
        ]
        if let subject { report["subject"] = subject }
        return report
    }

    /// The patient by the original PatientID (with the name as display when known).
    private static func subject(_ row: IdentifiedDiagnosis) -> [String: Any]? {
        guard let id = nonEmpty(row.patientID) else { return nil }
        var subject: [String: Any] = ["identifier": ["value": id], "type": "Patient"]
        if let name = nonEmpty(row.patientName?.replacingOccurrences(of: "^", with: " ").trimmingCharacters(in: .whitespaces)) {
            subject["display"] = name
        }
        return subject
    }

    /// FHIR strings may not be empty: an empty value is an absent one.
    private static func nonEmpty(_ text: String?) -> String? {
        guard let text, !text.trimmingCharacters(in: .whitespaces).isEmpty else { return nil }
        return text
    }

    private static func quantity(_ value: Double) -> [String: Any] {
        ["value": value, "unit": "probability", "system": "http://unitsofmeasure.org", "code": "1"]
    }

    private static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }
}
