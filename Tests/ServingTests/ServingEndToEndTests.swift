// The archive server end to end: real corpus files dropped into the built `dicom-etl run --with-worker --serve`
// (database in the test PostgreSQL, filesystem store) are de-identified, catalogued and diagnosed by the real
// pipeline and worker; then, against the running server:
//   - every role's boundary over HTTP and in PostgreSQL: no token 401, an unknown token 401, each role only its
//     endpoints, an analyst's answers (QIDO, metadata) hold no original identifier of the vault, an identified
//     read leaves exactly one audit row that only the operator role reads;
//   - dicomweb-client (PyPI) searches and retrieves what the catalogue holds; frames equal pydicom's decoding of
//     the stored objects (Scripts/dicomweb_check.py);
//   - the results page in headless Chromium: analyst refused, clinician listed, filters, preview, screenshot
//     (Scripts/results_page_check.py, into .build/test-output/ServingTests/);
//   - the FHIR answers parse as FHIR and name what the database holds (Scripts/fhir_check.py);
//   - the series tensor equals the stored tensors stacked;
//   - `dicom-etl serve` alone, with native TLS and CORS, on the same database and store.
// Routes of the test send every CR, DX and CT series to the pneumonia model, so that the corpus files of pydicom's
// wheel (a machine without ../shared) yield diagnoses too: they are the model's real outputs on those images.
import Foundation
import TestSupport
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite(.serialized) struct ServingEndToEndTests {
    static let environment = ProcessInfo.processInfo.environment
    static let adminURL = environment["DICOM_ETL_TEST_DATABASE_URL"]
    static let corpus = TestEnvironment.corpus
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var python: String { environment["DICOM_ETL_PYTHON"] ?? packageRoot.appendingPathComponent(".venv/bin/python").path }
    static var scripts: String { packageRoot.appendingPathComponent("Tests/ServingTests/Scripts").path }
    static var ready: Bool { adminURL != nil && FileManager.default.fileExists(atPath: corpus) }

    /// Files of pydicom's test set (in ../shared/data/dicom/pydicom or the wheel's folder) that the pipeline keeps:
    /// native CT and CR, RLE MR, JPEG 2000 CT, a four-slice CT series; and from ../shared, when present, chest
    /// radiographs in JPEG baseline and JPEG-LS.
    static let pydicomFiles = [
        "CT_small.dcm", "693_J2KI.dcm", "MR_small_RLE.dcm", "dicomdirtests/77654033/CR1/6154", "dicomdirtests/77654033/CR2/6247",
        "dicomdirtests/77654033/CR3/6278", "dicomdirtests/77654033/CT2/17106", "dicomdirtests/77654033/CT2/17136",
        "dicomdirtests/77654033/CT2/17166", "dicomdirtests/77654033/CT2/17196",
    ]
    static let sharedFiles = ["dwv/gdcm-CR-MONO1-10-chest.dcm", "torchxrayvision/Fake_MONOHR1.dcm", "pylibjpeg-data/JPEGLS/RG1_JLSN.dcm"]

    static func dropSet() -> [(String, String)] {
        let root = FileManager.default.fileExists(atPath: corpus + "/pydicom") ? corpus + "/pydicom" : corpus
        var files: [(String, String)] = []
        for relative in pydicomFiles where FileManager.default.fileExists(atPath: root + "/" + relative) {
            files.append((relative.replacingOccurrences(of: "/", with: "_"), root + "/" + relative))
        }
        for relative in sharedFiles where FileManager.default.fileExists(atPath: corpus + "/" + relative) {
            files.append((relative.replacingOccurrences(of: "/", with: "_"), corpus + "/" + relative))
        }
        return files
    }

    /// The built `dicom-etl`, beside the test binary.
    static var binary: String {
        let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        if directory.path.contains(".xctest") { directory = directory.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }
        return directory.appendingPathComponent("dicom-etl").path
    }

    /// A temporary world: folders, tokens, a fresh database, the daemon with its server.
    final class World: @unchecked Sendable {
        let root: String
        let scratch: ScratchDatabase
        var databaseURL: String { scratch.url }
        let port: Int
        var daemon: Process?
        var drop: String { root + "/drop" }
        var data: String { root + "/var" }
        var tokens: String { root + "/tokens" }
        var log: String { root + "/daemon.log" }
        var url: String { "http://127.0.0.1:\(port)" }

        init() throws {
            let base = FileManager.default.isWritableFile(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
            root = base + "/serving-e2e-\(UUID().uuidString.prefix(8))"
            port = try freeLocalPort()
            scratch = try ScratchDatabase(prefix: "serving")
            for folder in [drop, data] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
            try Data((0..<48).map { _ in UInt8.random(in: 0x41...0x5A) }).write(to: URL(fileURLWithPath: root + "/key"))
            chmod(root + "/key", 0o600)   // a key others could read stops the start
            try """
                routes:
                  - name: radiographs
                    modalities: [CR, DX]
                    recipe: cxr-28
                    model: pneumonia-cnn
                    model_version: "1.0.0"
                  - name: ct
                    modalities: [CT]
                    recipe: cxr-28
                    model: pneumonia-cnn
                    model_version: "1.0.0"
                """.write(toFile: root + "/routes.yaml", atomically: true, encoding: .utf8)
            for role in ["clinician", "analyst", "operator", "uploader"] {
                let made = try runCommand(ServingEndToEndTests.binary, ["token", "--role", role, "--name", "test-\(role)", "--tokens-file", tokens])
                try #require(made.status == 0, "token: \(made.error)")
                try made.output.write(toFile: tokenFile(role), atomically: true, encoding: .utf8)
            }
        }

        func tokenFile(_ role: String) -> String { root + "/\(role).token" }
        func token(_ role: String) -> String { (try? String(contentsOfFile: tokenFile(role), encoding: .utf8)) ?? "" }
        func count(_ sql: String) -> Int { Int((try? psql(databaseURL, sql)) ?? "") ?? -1 }

        func startDaemon() throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: ServingEndToEndTests.binary)
            let package = ServingEndToEndTests.packageRoot.path
            process.arguments = [
                "run", "--with-worker", "--models-dir", package + "/models/trained_models", "--serve", "--serve-port", String(port),
                "--serve-tokens-file", tokens, "--drop-folder", drop, "--data-dir", data, "--database-url", databaseURL,
                "--key-file", root + "/key", "--profile", package + "/etl/deidentify/basic.yaml", "--routes-file", root + "/routes.yaml",
                "--stable-file-seconds", "0.3", "--rescan-interval-seconds", "1", "--series-quiet-seconds", "1",
                "--ops-port", "0", "--concurrency", "2", "--log-level", "warning",
            ]
            var environment = ProcessInfo.processInfo.environment
            environment["DICOM_ETL_RECIPES"] = package + "/etl/normalize"
            environment["DICOM_ETL_STORAGE_URL"] = nil
            environment["OPENBLAS_NUM_THREADS"] = "1"
            process.environment = environment
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle(forWritingAtPath: log)
            try process.run()
            daemon = process
        }

        func stop() {
            if let daemon, daemon.isRunning {
                daemon.terminate()
                daemon.waitUntilExit()
            }
        }

        func cleanUp() {
            stop()
            scratch.drop()
            _ = try? runCommand("/bin/rm", ["-rf", root])
        }
    }

    struct HTTPAnswer {
        var status: Int
        var headers: [String: String]
        var body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
        /// The machine-readable code of an error answer.
        var errorCode: String? {
            ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any]).flatMap { ($0["error"] as? [String: Any])?["code"] as? String }
        }
    }

    static func get(_ url: String, token: String? = nil, headers: [String: String] = [:]) async throws -> HTTPAnswer {
        var request = URLRequest(url: try #require(URL(string: url)))
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = try #require(response as? HTTPURLResponse)
        var fields: [String: String] = [:]
        for (name, value) in http.allHeaderFields { fields[String(describing: name).lowercased()] = String(describing: value) }
        return HTTPAnswer(status: http.statusCode, headers: fields, body: data)
    }

    static var outputFolder: String {
        let folder = environment["DICOM_ETL_TEST_OUTPUT"].map { $0 + "/ServingTests" } ?? packageRoot.appendingPathComponent(".build/test-output/ServingTests").path
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        return folder
    }

    @Test(.enabled(if: ready, "needs DICOM_ETL_TEST_DATABASE_URL (scripts/with-services.sh) and a corpus"), .timeLimit(.minutes(10)))
    func archiveServerEndToEnd() async throws {
        let world = try World()
        defer { world.cleanUp() }
        let files = Self.dropSet()
        try #require(files.count >= 6, "the corpus holds the test's files")
        try world.startDaemon()
        let started = ContinuousClock.now
        for (name, source) in files { try FileManager.default.copyItem(atPath: source, toPath: world.drop + "/" + name) }

        // Settled: every file processed or quarantined, every job done, diagnoses written, the server answering.
        let deadline = ContinuousClock.now + .seconds(240)
        var settled = false
        var quiet = 0, lastDiagnoses = -1
        while ContinuousClock.now < deadline, world.daemon?.isRunning == true {
            // Diagnoses unchanged over 2 s (the series quiet period is 1 s): no job is still on its way.
            let diagnosesNow = world.count("SELECT count(*) FROM inference.diagnoses")
            quiet = diagnosesNow == lastDiagnoses ? quiet + 1 : 0
            lastDiagnoses = diagnosesNow
            let left = (try? FileManager.default.contentsOfDirectory(atPath: world.drop).filter { $0 != "processed" && $0 != "quarantine" }) ?? []
            let jobs = world.count("SELECT count(*) FROM inference.jobs"), done = world.count("SELECT count(*) FROM inference.jobs WHERE state = 'done'")
            let answering = (try? await Self.get(world.url + "/results"))?.status == 200
            if left.isEmpty && jobs > 0 && jobs == done && answering && quiet >= 7
                && world.count("SELECT count(*) FROM imaging.series WHERE state = 'open'") == 0 {
                settled = true
                break
            }
            try await Task.sleep(for: .milliseconds(300))
        }
        let log = (try? String(contentsOfFile: world.log, encoding: .utf8)) ?? ""
        try #require(settled, "the daemon did not settle: \(log.suffix(1500))")
        let settling = ContinuousClock.now - started
        let instances = world.count("SELECT count(*) FROM imaging.instances")
        let diagnoses = world.count("SELECT count(*) FROM inference.diagnoses")
        try #require(instances >= 6 && diagnoses >= 3)

        try await roleBoundaries(world)
        try await analystSeesNoOriginalIdentifier(world)
        try await identifiedReadsAreAudited(world)
        try dicomwebClientRetrievesWhatTheCatalogueHolds(world)
        try resultsPageInChromium(world)
        try fhirAnswersAreFHIRAndTheDatabasesRows(world)
        try await seriesTensorIsTheStoredTensorsStacked(world)
        try await serveCommandWithTLSAndCORS(world)

        world.stop()
        #expect(world.daemon?.terminationStatus == 0, "the daemon stops cleanly on SIGTERM")
        print("serving end to end: \(files.count) files → \(instances) instances, \(diagnoses) diagnoses, settled in \(settling); checks took \(ContinuousClock.now - started - settling)")
    }

    /// Each route admits its roles only; no token and unknown tokens are 401 with the one error shape.
    func roleBoundaries(_ world: World) async throws {
        let study = try psql(world.databaseURL, "SELECT study_uid FROM imaging.studies ORDER BY study_uid LIMIT 1")
        let readPaths = ["/studies", "/series", "/instances", "/studies/\(study)/metadata", "/studies/\(study)/series"]
        let resultPaths = ["/diagnoses", "/fhir/DiagnosticReport", "/diagnoses/1"]
        for path in readPaths + resultPaths + ["/audit"] {
            let none = try await Self.get(world.url + path)
            #expect(none.status == 401 && none.errorCode == "missing_token", "\(path) without a token: \(none.status)")
            #expect(none.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
            let unknown = try await Self.get(world.url + path, token: "not-a-token")
            #expect(unknown.status == 401 && unknown.errorCode == "unknown_token", "\(path) with an unknown token: \(unknown.status)")
        }
        let allowed: [String: (reads: Bool, results: Bool, audit: Bool)] = [
            "analyst": (true, false, false), "clinician": (true, true, false), "operator": (false, false, true), "uploader": (false, false, false),
        ]
        for (role, may) in allowed {
            let token = world.token(role)
            for path in readPaths {
                let answer = try await Self.get(world.url + path, token: token)
                #expect(may.reads ? answer.status == 200 : (answer.status == 403 && answer.errorCode == "role_not_allowed"), "\(role) \(path): \(answer.status)")
            }
            for path in resultPaths {
                let answer = try await Self.get(world.url + path, token: token)
                #expect(may.results ? answer.status == 200 : answer.status == 403, "\(role) \(path): \(answer.status)")
            }
            let audit = try await Self.get(world.url + "/audit", token: token)
            #expect(may.audit ? audit.status == 200 : audit.status == 403, "\(role) /audit: \(audit.status)")
        }
        // Malformed requests are 400 with the parameter named; unknown paths 404.
        let bad = try await Self.get(world.url + "/studies?NoSuchKeyword=1", token: world.token("analyst"))
        #expect(bad.status == 400 && bad.errorCode == "bad_request")
        let missing = try await Self.get(world.url + "/studies/1.2.3/series/4.5.6/instances/7.8.9/metadata", token: world.token("analyst"))
        #expect(missing.status == 404 && missing.errorCode == "not_found")
        // In PostgreSQL: the audit is the operator's (and the server's, which answers /audit as operator) alone.
        for role in ["analyst", "clinician", "dicom_etl_daemon", "dicom_etl_worker"] {
            #expect(throws: QueryFailed.self, "\(role) reads the audit") { try psql(world.databaseURL, "SET ROLE \(role); SELECT count(*) FROM audit.identified_reads") }
        }
        #expect(try psql(world.databaseURL, "SET ROLE operator; SELECT count(*) >= 0 FROM audit.identified_reads") == "t")
        #expect(throws: QueryFailed.self) { try psql(world.databaseURL, "SET ROLE operator; DELETE FROM audit.identified_reads") }
    }

    /// Nothing the vault holds reaches an analyst through QIDO or metadata.
    func analystSeesNoOriginalIdentifier(_ world: World) async throws {
        let originals = try psql(world.databaseURL, """
            SELECT v FROM (
              SELECT original_patient_id AS v FROM vault.patients UNION SELECT patient_name FROM vault.patients
              UNION SELECT birth_date FROM vault.patients UNION SELECT original_study_uid FROM vault.studies
              UNION SELECT accession_number FROM vault.studies UNION SELECT original_series_uid FROM vault.series
              UNION SELECT original_sop_instance_uid FROM vault.instances) x
            WHERE v IS NOT NULL AND length(v) >= 6
            """).split(separator: "\n").map(String.init)
        try #require(originals.count >= 6)
        let token = world.token("analyst")
        var bodies: [String] = []
        for path in ["/studies?includefield=all&limit=1000", "/series?includefield=all&limit=1000", "/instances?includefield=all&limit=1000"] {
            bodies.append(try await Self.get(world.url + path, token: token).text)
        }
        for study in try psql(world.databaseURL, "SELECT study_uid FROM imaging.studies").split(separator: "\n") {
            bodies.append(try await Self.get(world.url + "/studies/\(study)/metadata", token: token).text)
        }
        let leaks = originals.filter { original in bodies.contains { $0.contains(original) || $0.contains(original.replacingOccurrences(of: "^", with: " ")) } }
        #expect(leaks.isEmpty, "\(leaks.count) original identifiers in an analyst's answers")
        print("serving: \(originals.count) original identifiers checked against \(bodies.count) analyst answers (\(bodies.map(\.count).reduce(0, +)) bytes): \(leaks.count) found")
    }

    /// A clinician's read leaves one audit row (who, what, when, which rows); refused reads and previews leave none.
    func identifiedReadsAreAudited(_ world: World) async throws {
        let before = world.count("SELECT count(*) FROM audit.identified_reads")
        _ = try await Self.get(world.url + "/diagnoses", token: world.token("analyst"))
        _ = try await Self.get(world.url + "/diagnoses")
        #expect(world.count("SELECT count(*) FROM audit.identified_reads") == before, "refused reads are not audited as reads")
        let patient = try psql(world.databaseURL, "SELECT patient_id FROM clinical.diagnoses WHERE patient_id <> '' GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
        let query = try #require(patient.addingPercentEncoding(withAllowedCharacters: .alphanumerics))
        let answer = try await Self.get(world.url + "/diagnoses?patient=\(query)", token: world.token("clinician"))
        try #require(answer.status == 200)
        let listed = ((try JSONSerialization.jsonObject(with: answer.body) as? [String: Any])?["diagnoses"] as? [[String: Any]]) ?? []
        let ids = listed.compactMap { ($0["id"] as? NSNumber)?.int64Value }.sorted()
        #expect(!ids.isEmpty && ids.count == world.count("SELECT count(*) FROM clinical.diagnoses WHERE patient_id = '\(patient)'"))
        let row = try psql(world.databaseURL, """
            SELECT principal, role, action, parameters->>'patient', array_to_string(ARRAY(SELECT unnest(diagnosis_ids) ORDER BY 1), ','),
                   result_count, at > now() - interval '1 minute'
            FROM audit.identified_reads ORDER BY id DESC LIMIT 1
            """)
        #expect(world.count("SELECT count(*) FROM audit.identified_reads") == before + 1)
        #expect(row == "test-clinician|clinician|GET /diagnoses|\(patient)|\(ids.map(String.init).joined(separator: ","))|\(ids.count)|t")
        let preview = try await Self.get(world.url + "/diagnoses/\(ids[0])/preview", token: world.token("clinician"))
        #expect(preview.status == 200 && preview.headers["content-type"] == "image/png" && preview.body.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        #expect(world.count("SELECT count(*) FROM audit.identified_reads") == before + 1, "a de-identified preview is not an identified read")
        let audit = try await Self.get(world.url + "/audit?principal=test-clinician", token: world.token("operator"))
        #expect(audit.status == 200 && audit.text.contains("\"action\":\"GET \\/diagnoses\""))
    }

    func dicomwebClientRetrievesWhatTheCatalogueHolds(_ world: World) throws {
        let objects = try psql(world.databaseURL, """
            SELECT json_object_agg(sop_instance_uid, json_build_object('study', study_uid, 'series', series_uid, 'modality', modality,
                                   'path', '\(world.data)/objects/data/' || file_key)) FROM imaging.instances
            """)
        try objects.write(toFile: world.root + "/objects.json", atomically: true, encoding: .utf8)
        let result = try runCommand(Self.python, [
            Self.scripts + "/dicomweb_check.py", "--url", world.url, "--token-file", world.tokenFile("analyst"),
            "--objects", world.root + "/objects.json", "--out", Self.outputFolder + "/dicomweb-report.json",
        ])
        #expect(result.status == 0, "dicomweb-client check: \(result.output) \(result.error.suffix(2000))")
        print("serving dicomweb-client: \(result.output)")
    }

    func resultsPageInChromium(_ world: World) throws {
        let expected = try psql(world.databaseURL, """
            SELECT json_build_object('total', (SELECT count(*) FROM clinical.diagnoses),
              'patient', (SELECT json_build_object('id', patient_id, 'count', count(*)) FROM clinical.diagnoses WHERE patient_id <> ''
                          GROUP BY patient_id ORDER BY count(*) DESC, patient_id LIMIT 1),
              'label', (SELECT json_build_object('value', label, 'count', count(*)) FROM clinical.diagnoses GROUP BY label
                        ORDER BY count(*), label LIMIT 1))
            """)
        try expected.write(toFile: world.root + "/page-expected.json", atomically: true, encoding: .utf8)
        let result = try runCommand(Self.python, [
            Self.scripts + "/results_page_check.py", "--url", world.url, "--clinician-token-file", world.tokenFile("clinician"),
            "--analyst-token-file", world.tokenFile("analyst"), "--expected", world.root + "/page-expected.json", "--out", Self.outputFolder,
        ])
        #expect(result.status == 0, "results page: \(result.output) \(result.error.suffix(2000))")
        let screenshot = Self.outputFolder + "/results-page.png"
        let size = (try? FileManager.default.attributesOfItem(atPath: screenshot)[.size] as? Int) ?? 0
        #expect(size > 10_000, "the screenshot is written")
        print("serving results page: \(result.output)")
    }

    func fhirAnswersAreFHIRAndTheDatabasesRows(_ world: World) throws {
        let expected = try psql(world.databaseURL, """
            SELECT json_object_agg(diagnosis_id, json_build_object('patient_id', patient_id, 'study_uid', study_uid,
                   'accession_number', accession_number, 'label', label, 'probability', (probabilities->>label)::float8))
            FROM clinical.diagnoses
            """)
        try expected.write(toFile: world.root + "/fhir-expected.json", atomically: true, encoding: .utf8)
        let result = try runCommand(Self.python, [
            Self.scripts + "/fhir_check.py", "--url", world.url, "--token-file", world.tokenFile("clinician"), "--expected", world.root + "/fhir-expected.json",
        ])
        #expect(result.status == 0, "FHIR check: \(result.output) \(result.error.suffix(2000))")
    }

    func seriesTensorIsTheStoredTensorsStacked(_ world: World) async throws {
        let series = try psql(world.databaseURL, """
            SELECT i.study_uid || ' ' || i.series_uid || ' ' || count(*) FROM imaging.tensors t JOIN imaging.instances i USING (sop_instance_uid)
            GROUP BY i.study_uid, i.series_uid ORDER BY count(*) DESC LIMIT 1
            """).split(separator: " ").map(String.init)
        try #require(series.count == 3)
        let answer = try await Self.get(world.url + "/studies/\(series[0])/series/\(series[1])/tensors", token: world.token("analyst"))
        try #require(answer.status == 200)
        try answer.body.write(to: URL(fileURLWithPath: world.root + "/series.npy"))
        let keys = try psql(world.databaseURL, """
            SELECT string_agg('\(world.data)/objects/data/' || t.tensor_key, ' ' ORDER BY i.instance_number NULLS LAST, t.sop_instance_uid)
            FROM imaging.tensors t JOIN imaging.instances i USING (sop_instance_uid) WHERE i.series_uid = '\(series[1])'
            """)
        let check = try runCommand(Self.python, ["-c", """
            import sys, numpy as np
            stacked = np.load(sys.argv[1]); parts = [np.load(p) for p in sys.argv[2:]]
            assert stacked.shape == (len(parts),) + parts[0].shape, (stacked.shape, parts[0].shape)
            assert np.array_equal(stacked, np.stack(parts))
            print(stacked.shape)
            """, world.root + "/series.npy"] + keys.split(separator: " ").map(String.init))
        #expect(check.status == 0, "series tensor: \(check.error)")
        #expect(Int(series[2]) ?? 0 >= 2, "a series of several instances was stacked")
        let clinicianNoRecipe = try await Self.get(world.url + "/studies/\(series[0])/series/\(series[1])/tensors?recipe=no-such", token: world.token("analyst"))
        #expect(clinicianNoRecipe.status == 404)
    }

    /// `dicom-etl serve` alone on the same database and store, with native TLS and CORS for a viewer's origin,
    /// connected as a login role that is only a member of `dicom_etl_server`.
    func serveCommandWithTLSAndCORS(_ world: World) async throws {
        let login = "serving_login_\(UUID().uuidString.prefix(8).lowercased())"
        let admin = try #require(Self.adminURL)
        _ = try psql(admin, "CREATE ROLE \(login) LOGIN IN ROLE dicom_etl_server")
        defer { _ = try? psql(admin, "DROP ROLE IF EXISTS \(login)") }
        var components = try #require(URLComponents(string: world.databaseURL))
        components.user = login
        let loginURL = try #require(components.string)
        let certificate = world.root + "/server.pem", key = world.root + "/server.key"
        let made = try runCommand("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ])
        try #require(made.status == 0, "openssl: \(made.error)")
        let port = try freeLocalPort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: Self.binary)
        server.arguments = [
            "serve", "--database-url", loginURL, "--storage-url", "file://\(world.data)/objects", "--serve-port", String(port),
            "--serve-tokens-file", world.tokens, "--serve-tls-certificate", certificate, "--serve-tls-key", key,
            "--serve-cors-origins", "https://viewer.example.org", "--log-level", "warning",
        ]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            if server.isRunning { server.terminate(); server.waitUntilExit() }
        }
        let url = "https://127.0.0.1:\(port)"
        var answered = ""
        for _ in 0..<100 {
            answered = try runCommand("/usr/bin/curl", [
                "-s", "--cacert", certificate, "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer \(world.token("analyst"))", url + "/studies",
            ]).output
            if answered == "200" { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(answered == "200", "QIDO over TLS with the server's certificate verified, as the least-privileged login")
        let before = world.count("SELECT count(*) FROM audit.identified_reads")
        let results = try runCommand("/usr/bin/curl", [
            "-s", "--cacert", certificate, "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer \(world.token("clinician"))",
            url + "/diagnoses?limit=1",
        ]).output
        #expect(results == "200" && world.count("SELECT count(*) FROM audit.identified_reads WHERE principal = 'test-clinician'") > 0
                && world.count("SELECT count(*) FROM audit.identified_reads") == before + 1, "an audited read as the least-privileged login")
        let operatorAudit = try runCommand("/usr/bin/curl", [
            "-s", "--cacert", certificate, "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer \(world.token("operator"))", url + "/audit",
        ]).output
        #expect(operatorAudit == "200")
        let plain = try runCommand("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/studies"]).output
        #expect(plain == "000", "no plain HTTP on the TLS port")
        let preflight = try runCommand("/usr/bin/curl", [
            "-s", "-i", "--cacert", certificate, "-X", "OPTIONS", "-H", "Origin: https://viewer.example.org",
            "-H", "Access-Control-Request-Method: GET", "-H", "Access-Control-Request-Headers: authorization", url + "/studies",
        ]).output.lowercased()
        #expect(preflight.hasPrefix("http/1.1 204") && preflight.contains("access-control-allow-origin: https://viewer.example.org"))
        let foreign = try runCommand("/usr/bin/curl", [
            "-s", "-i", "--cacert", certificate, "-H", "Origin: https://elsewhere.example.org", "-H", "Authorization: Bearer \(world.token("analyst"))", url + "/studies",
        ]).output.lowercased()
        #expect(foreign.hasPrefix("http/1.1 200") && !foreign.contains("access-control-allow-origin"), "another origin gets no CORS grant")
        server.terminate()
        server.waitUntilExit()
        #expect(server.terminationStatus == 0, "serve stops cleanly on SIGTERM")
    }
}
