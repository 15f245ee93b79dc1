#!/usr/bin/env python3
"""Validates the results API's FHIR answers with fhir.resources (PyPI) and compares them with the database.

    fhir_check.py --url http://127.0.0.1:PORT --token-file F --expected expected.json

`expected.json`: {"<diagnosis id>": {"patient_id": …, "study_uid": …, "accession_number": …, "label": …,
"probability": …}} from clinical.diagnoses. The searchset Bundle and each DiagnosticReport must parse as FHIR
(R4B models: DiagnosticReport, ImagingStudy, Observation and Device are unchanged from R4 in what is used here) and
name the same patient, study, accession number, label and probability. Prints a JSON report; exit 1 on a failure.
"""
import argparse
import json
import sys
import urllib.request

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport


def get(url, token, accept):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Accept": accept})
    with urllib.request.urlopen(request) as response:
        return response.headers.get("Content-Type"), json.load(response)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--expected", required=True)
    args = parser.parse_args()
    token = open(args.token_file).read().strip()
    expected = json.load(open(args.expected))
    failures = []
    content_type, bundle_json = get(args.url + "/fhir/DiagnosticReport?limit=1000", token, "application/fhir+json")
    if not content_type.startswith("application/fhir+json"):
        failures.append("the Bundle is not application/fhir+json")
    bundle = Bundle.model_validate(bundle_json)
    if bundle.total != len(expected) or len(bundle.entry or []) != len(expected):
        failures.append(f"the Bundle holds {bundle.total} reports, the database {len(expected)}")
    checked = 0
    for entry in bundle.entry or []:
        report = entry.resource
        want = expected.get(report.id)
        if want is None:
            failures.append("a report the database does not hold")
            continue
        _, single = get(args.url + f"/diagnoses/{report.id}", token, "application/fhir+json")
        if DiagnosticReport.model_validate(single).id != report.id:
            failures.append("GET /diagnoses/{id} with Accept: application/fhir+json is another report")
        contained = {r.id: r for r in report.contained or []}
        observation, study = contained.get("observation"), contained.get("study")
        subject = report.subject.identifier.value if report.subject and report.subject.identifier else None
        if subject != (want["patient_id"] or None):
            failures.append("the report's subject is not the patient")
        identifiers = {i.value for i in (study.identifier or [])} if study else set()
        if want["study_uid"] and f"urn:oid:{want['study_uid']}" not in identifiers:
            failures.append("the ImagingStudy does not name the study UID")
        if want["accession_number"] and want["accession_number"] not in identifiers:
            failures.append("the ImagingStudy does not name the accession number")
        if report.conclusionCode[0].coding[0].code != want["label"]:
            failures.append("the conclusion is not the label")
        if observation is None or abs(float(observation.valueQuantity.value) - want["probability"]) > 1e-9:
            failures.append("the Observation's value is not the label's probability")
        checked += 1
    result = {"reports": checked, "failures": failures}
    print(json.dumps(result, sort_keys=True))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
