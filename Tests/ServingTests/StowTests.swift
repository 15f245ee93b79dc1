// STOW-RS end to end: the built `dicom-etl run --serve` with a fresh database; curl and dicomweb-client upload
// corpus files as `uploader`. The answers are PS3.18's (ReferencedSOPSequence / FailedSOPSequence, 200 / 202 /
// 409, 401 for a wrong token, 403 for another role), and every instance reported stored ends catalogued,
// quarantined or a duplicate exactly once in the ledger, with its source (the token's name) recorded.
import Foundation
import TestSupport
import Testing

@Suite(.serialized) struct StowTests {
    typealias E2E = ServingEndToEndTests

    static func curl(_ world: E2E.World, path: String, token: String, body: String, boundary: String) throws -> (status: Int, json: [String: Any]) {
        let result = try runCommand("/usr/bin/curl", [
            "-sS", "-o", world.root + "/answer.json", "-w", "%{http_code}", "-X", "POST", world.url + path,
            "-H", "Authorization: Bearer \(token)", "-H", "Expect:",
            "-H", "Content-Type: multipart/related; type=\"application/dicom\"; boundary=\(boundary)", "--data-binary", "@" + body,
        ])
        let answer = FileManager.default.contents(atPath: world.root + "/answer.json") ?? Data()
        return (Int(result.output) ?? -1, ((try? JSONSerialization.jsonObject(with: answer)) as? [String: Any]) ?? [:])
    }

    static func items(_ json: [String: Any], _ tag: String) -> Int {
        ((json[tag] as? [String: Any])?["Value"] as? [Any])?.count ?? 0
    }

    /// A multipart/related body of the files (and extra raw parts), written to `path`.
    static func body(files: [String], extra: [Data] = [], boundary: String, path: String) throws {
        var body = Data()
        for part in try files.map({ try Data(contentsOf: URL(fileURLWithPath: $0)) }) + extra {
            body.append(Data("--\(boundary)\r\nContent-Type: application/dicom\r\n\r\n".utf8))
            body.append(part)
            body.append(Data("\r\n".utf8))
        }
        body.append(Data("--\(boundary)--\r\n".utf8))
        try body.write(to: URL(fileURLWithPath: path))
    }

    @Test(.enabled(if: E2E.ready, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh) and a corpus"), .timeLimit(.minutes(5)))
    func stowStoresDurablyAndAnswersAsPS318() async throws {
        let world = try E2E.World()
        defer { world.cleanUp() }
        let files = E2E.dropSet().map(\.1)
        try #require(files.count >= 6)
        try world.startDaemon()
        var up = false
        for _ in 0..<300 where world.daemon?.isRunning == true {
            if (try? await E2E.get(world.url + "/studies"))?.status == 401 { up = true; break }
            try await Task.sleep(for: .milliseconds(200))
        }
        try #require(up, "the server did not come up")
        let boundary = "stow-\(UUID().uuidString)"
        let bodyPath = world.root + "/body"

        // curl: five files and one part that is not a Part-10 file → 202, five referenced, one failed (C000).
        try Self.body(files: Array(files.prefix(5)), extra: [Data("not dicom".utf8)], boundary: boundary, path: bodyPath)
        let mixed = try Self.curl(world, path: "/studies", token: world.token("uploader"), body: bodyPath, boundary: boundary)
        #expect(mixed.status == 202)
        #expect(Self.items(mixed.json, "00081199") == 5)
        #expect(Self.items(mixed.json, "00081198") == 1)
        let failure = ((mixed.json["00081198"] as? [String: Any])?["Value"] as? [[String: Any]])?.first
        #expect(((failure?["00081197"] as? [String: Any])?["Value"] as? [Int])?.first == 0xC000)

        // Only a failing part → 409; a wrong token → 401; another role → 403; nothing stored by these.
        try Self.body(files: [], extra: [Data("still not dicom".utf8)], boundary: boundary, path: bodyPath)
        #expect(try Self.curl(world, path: "/studies", token: world.token("uploader"), body: bodyPath, boundary: boundary).status == 409)
        try Self.body(files: [files[5]], boundary: boundary, path: bodyPath)
        #expect(try Self.curl(world, path: "/studies", token: "wrong-token", body: bodyPath, boundary: boundary).status == 401)
        #expect(try Self.curl(world, path: "/studies", token: world.token("analyst"), body: bodyPath, boundary: boundary).status == 403)

        // dicomweb-client, an independent STOW-RS client, on POST /studies/{study}.
        let script = """
            import sys
            from pydicom import dcmread
            from dicomweb_client.api import DICOMwebClient
            token = open(sys.argv[2]).read().strip()
            client = DICOMwebClient(url=sys.argv[1], headers={"Authorization": "Bearer " + token})
            datasets = [dcmread(p) for p in sys.argv[3:]]
            answer = client.store_instances(datasets=datasets, study_instance_uid=datasets[0].StudyInstanceUID)
            stored = len(answer.get("ReferencedSOPSequence", []))
            failed = len(answer.get("FailedSOPSequence", []))
            print(stored, failed)
            sys.exit(0 if stored == len(datasets) and failed == 0 else 1)
            """
        let uploaded = Array(files.dropFirst(5).prefix(1))
        let client = try runCommand(E2E.python, ["-c", script, world.url, world.tokenFile("uploader")] + uploaded)
        #expect(client.status == 0, "dicomweb-client: \(client.output) \(client.error.suffix(1500))")

        // Every stored instance goes through the pipeline once, its source the uploader token.
        let stored = 5 + uploaded.count
        let deadline = ContinuousClock.now + .seconds(120)
        var final = 0
        while ContinuousClock.now < deadline {
            final = world.count("""
                SELECT count(*) FROM ingest.received_sources WHERE state IN ('catalogued', 'quarantined', 'duplicate')
                """)
            if final >= stored { break }
            try await Task.sleep(for: .milliseconds(300))
        }
        #expect(final == stored)
        #expect(world.count("SELECT count(*) FROM ingest.received_files WHERE transport = 'stow' AND sender = 'test-uploader'") == stored)
        #expect(world.count("SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM ingest.received_sources GROUP BY file_name) AS r") == 1)
        print("STOW-RS: \(stored) instances stored (curl 202 with one failed part, 409, 401, 403; dicomweb-client), all through the pipeline once")
    }
}
