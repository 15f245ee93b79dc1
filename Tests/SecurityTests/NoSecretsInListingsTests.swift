// No secret in a process listing or a log: the real `dicom-etl run --with-worker` as production runs it —
// PostgreSQL over TLS (verify-full, a scram password from DICOM_ETL_DATABASE_PASSWORD_FILE), S3 over TLS
// (a private CA, moto checking signatures against a key from AWS_SECRET_ACCESS_KEY_FILE), the key file
// with mode 0600, logs at debug level — ingests real DICOM files; then /proc/*/cmdline of every process,
// the daemon's logs and /metrics are searched for the key, the database password and the S3 secret. The
// same search finds a secret planted in a process's command line, so it can fail; and broken copies of the
// set-up (a key file with mode 0644, a password as a flag or in the URL flag) stop the start.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import TestSupport
import Testing

/// What the daemon run needs, and where the DICOM files come from.
enum DaemonRunSetup {
    static let corpus = TestEnvironment.corpus
    static var ready: Bool {
        ThrowawayPostgres.available && ThrowawayPKI.openssl != nil && TLSMoto.available
            && FileManager.default.isExecutableFile(atPath: dicomETLBinary) && FileManager.default.fileExists(atPath: corpus)
    }
}

@Suite(.serialized, .enabled(if: DaemonRunSetup.ready, "PostgreSQL 15, openssl, moto, the dicom-etl binary and DICOM files are needed"))
struct NoSecretsInListingsTests {
    static let environment = ProcessInfo.processInfo.environment
    static let corpus = DaemonRunSetup.corpus

    /// Chest radiographs (routed to the model, so the worker runs too) when the corpus has them, and a few more files.
    static func sampleFiles() -> [String] {
        let radiographs = ["dwv/gdcm-CR-MONO1-10-chest.dcm", "highdicom/dx_image.dcm", "torchxrayvision/Fake_MONOHR1.dcm"]
            .map { corpus + "/" + $0 }.filter { FileManager.default.fileExists(atPath: $0) }
        // pydicom's small test files (the corpus' pydicom folder, or the wheel's files where ../shared is absent).
        let root = FileManager.default.fileExists(atPath: corpus + "/pydicom") ? corpus + "/pydicom" : corpus
        let small = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "JPEG-lossy.dcm", "SC_rgb_dcmtk_+eb+cr.dcm", "MR_truncated.dcm"]
            .map { root + "/" + $0 }.filter { FileManager.default.fileExists(atPath: $0) }
        return radiographs + small
    }

    /// The secret's text and its hexadecimal spelling (a secret logged as bytes would show so).
    static func spellings(_ secret: String) -> [[UInt8]] {
        [Array(secret.utf8), Array(Array(secret.utf8).map { String(format: "%02x", $0) }.joined().utf8)]
    }

    /// Which of the named secrets occur in `haystack`.
    static func found(_ secrets: [String: String], in haystack: [UInt8]) -> [String] {
        let data = Data(haystack)
        return secrets.filter { _, secret in spellings(secret).contains { data.range(of: Data($0)) != nil } }.map(\.key).sorted()
    }

    /// Every process's command line (pid → bytes), as `ps` shows it to any user of the host.
    static func commandLines() -> [String: [UInt8]] {
        var lines: [String: [UInt8]] = [:]
        for pid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(pid) != nil {
            if let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") { lines[pid] = Array(data) }
        }
        return lines
    }

    @Test func noSecretInProcessListingsLogsOrMetrics() async throws {
        let folder = try ScratchFolder("dicom-etl-nosecret")
        defer { folder.remove() }
        let pki = try ThrowawayPKI(folder: folder.path)
        let cluster = try ThrowawayPostgres(pki: pki)
        defer { cluster.stop() }
        let moto = try TLSMoto(pki: pki, log: folder.path + "/moto.log", signatureChecking: true)
        defer { moto.stop() }
        // An IAM user and its key, so that moto checks every signature from here on.
        let python = try #require(TLSMoto.python)
        var pythonEnvironment = Self.environment
        pythonEnvironment["AWS_CA_BUNDLE"] = pki.caCertificate
        let made = try runTool(python, [packageRoot + "/scripts/moto-credentials.py", "https://localhost:\(moto.port)"], environment: pythonEnvironment)
        let keys = made.output.split(whereSeparator: \.isWhitespace).map(String.init)
        try #require(made.status == 0 && keys.count == 2, "\(made.output)")
        let (accessKey, s3Secret) = (keys[0], keys[1])

        let key = (0..<48).map { _ in String(UnicodeScalar(UInt8.random(in: 0x61...0x7A))) }.joined()
        let secrets = ["pseudonymisation key": key, "database password": cluster.etlPassword, "S3 secret": s3Secret]
        let keyFile = try folder.write("pseudonym.key", key)
        let passwordFile = try folder.write("db-password", cluster.etlPassword + "\n")
        let accessKeyFile = try folder.write("s3-access-key", accessKey)
        let secretFile = try folder.write("s3-secret", s3Secret)
        let drop = folder.path + "/drop", data = folder.path + "/var"
        for path in [drop, data] { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
        let bucket = "nosecret-" + UUID().uuidString.prefix(8).lowercased()
        let storageURL = "s3://\(bucket)/objects?endpoint=https://localhost:\(moto.port)&region=us-east-1&ca_bundle=\(pki.caCertificate)"

        // The bucket, made with the same credentials through the same signed, verified channel.
        var daemonEnvironment = Self.environment
        for name in daemonEnvironment.keys where name.hasPrefix("DICOM_ETL_") || name.hasPrefix("AWS_") { daemonEnvironment[name] = nil }
        daemonEnvironment.merge([
            "DICOM_ETL_DATABASE_URL": cluster.url(options: "sslmode=verify-full&sslrootcert=\(pki.caCertificate)"),
            "DICOM_ETL_DATABASE_PASSWORD_FILE": passwordFile, "DICOM_ETL_STORAGE_URL": storageURL,
            "AWS_ACCESS_KEY_ID_FILE": accessKeyFile, "AWS_SECRET_ACCESS_KEY_FILE": secretFile, "DICOM_ETL_KEY_FILE": keyFile,
            "DICOM_ETL_RECIPES": packageRoot + "/etl/normalize", "OPENBLAS_NUM_THREADS": "1",
        ]) { $1 }
        let bucketMade = try runTool(python, ["-c", """
            import boto3, sys
            boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id=sys.argv[2],
                         aws_secret_access_key=open(sys.argv[3]).read()).create_bucket(Bucket=sys.argv[4])
            """, "https://localhost:\(moto.port)", accessKey, secretFile, bucket], environment: pythonEnvironment)
        try #require(bucketMade.status == 0, "\(bucketMade.output)")

        let opsPort = try freeLocalPort()
        let arguments = [
            "run", "--with-worker", "--models-dir", packageRoot + "/models/trained_models", "--drop-folder", drop, "--data-dir", data,
            "--profile", packageRoot + "/etl/deidentify/basic.yaml", "--routes-file", packageRoot + "/etl/routes.yaml",
            "--stable-file-seconds", "0.3", "--rescan-interval-seconds", "1", "--series-quiet-seconds", "1",
            "--ops-port", String(opsPort), "--concurrency", "2", "--log-level", "debug",
        ]
        let log = folder.path + "/daemon.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: dicomETLBinary)
        daemon.arguments = arguments
        daemon.environment = daemonEnvironment
        let logHandle = FileHandle(forWritingAtPath: log)
        daemon.standardOutput = logHandle
        daemon.standardError = logHandle
        try daemon.run()
        defer { if daemon.isRunning { daemon.terminate(); daemon.waitUntilExit() } }

        let started = ContinuousClock.now
        let files = Self.sampleFiles()
        for (index, source) in files.enumerated() {
            try FileManager.default.copyItem(atPath: source, toPath: "\(drop)/.\(index).part")
            try FileManager.default.moveItem(atPath: "\(drop)/.\(index).part", toPath: "\(drop)/\(index).dcm")
        }
        // Until every file has left the drop folder, and the worker has run the routed series (when there are any).
        let deadline = ContinuousClock.now + .seconds(180)
        var settled = false
        while ContinuousClock.now < deadline, daemon.isRunning {
            let left = (try? FileManager.default.contentsOfDirectory(atPath: drop))?.filter { $0.hasSuffix(".dcm") } ?? []
            let open = (try? cluster.psql("""
                SELECT (SELECT count(*) FROM imaging.series WHERE state = 'open') + (SELECT count(*) FROM inference.jobs WHERE state <> 'done')
                """, database: "etl")) ?? "x"
            if left.isEmpty, open == "0" { settled = true; break }
            try await Task.sleep(for: .milliseconds(300))
        }
        #expect(daemon.isRunning, "the daemon stopped: \((try? String(contentsOfFile: log, encoding: .utf8))?.suffix(2000) ?? "")")
        #expect(settled, "the files were not all ingested in time")
        let ingestTime = ContinuousClock.now - started
        let catalogued = Int((try? cluster.psql("SELECT count(*) FROM ingest.source_files WHERE state = 'catalogued'", database: "etl")) ?? "") ?? 0
        #expect(catalogued > 0, "nothing reached the catalogue over TLS")
        let metrics = try runTool("/usr/bin/curl", ["-fsS", "http://127.0.0.1:\(opsPort)/metrics"])
        #expect(metrics.status == 0 && metrics.output.contains("dicom_etl_files_ingested_total"))

        // The search, while the daemon, its sandbox helpers and the database sessions are alive.
        let listings = Self.commandLines()
        #expect(listings.count > 3)
        for (pid, line) in listings {
            #expect(Self.found(secrets, in: line).isEmpty, "process \(pid): \(Self.found(secrets, in: line))")
        }
        daemon.terminate()
        daemon.waitUntilExit()
        let logged = Array(FileManager.default.contents(atPath: log) ?? Data())
        #expect(logged.count > 1000, "the debug log is nearly empty (\(logged.count) bytes)")
        #expect(String(decoding: logged, as: UTF8.self).contains("\"level\":\"debug\""), "no debug line was logged")
        #expect(Self.found(secrets, in: logged).isEmpty, "daemon log: \(Self.found(secrets, in: logged))")
        #expect(Self.found(secrets, in: Array(metrics.output.utf8)).isEmpty, "metrics: \(Self.found(secrets, in: Array(metrics.output.utf8)))")
        let diagnoses = (try? cluster.psql("SELECT count(*) FROM inference.diagnoses", database: "etl")) ?? "?"
        print("no-secrets run: \(files.count) files dropped, \(catalogued) catalogued over TLS and \(diagnoses) diagnoses in "
              + "\(ingestTime.formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 1)))); "
              + "\(listings.count) command lines, \(logged.count) log bytes and the metrics searched for 3 secrets")

        // The search can fail: a secret planted in a command line is found.
        let argv: [UnsafeMutablePointer<CChar>?] = (["/bin/sh", "-c", "while :; do sleep 1; done", cluster.etlPassword] as [String]).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var planted: pid_t = 0
        try #require(posix_spawn(&planted, "/bin/sh", nil, nil, argv, environ) == 0)
        // (Polled: until the child has run exec, its command line is still the parent's.)
        var plantedFound: [String] = []
        for _ in 0..<100 where plantedFound.isEmpty {
            plantedFound = Self.commandLines()[String(planted)].map { Self.found(secrets, in: $0) } ?? []
            if plantedFound.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(plantedFound == ["database password"])
        kill(planted, SIGKILL)
        var status: Int32 = 0
        waitpid(planted, &status, 0)
    }

    @Test func brokenCopiesOfTheSetUpStopTheStart() throws {
        let folder = try ScratchFolder("dicom-etl-nosecret")
        defer { folder.remove() }
        let key = "key-" + UUID().uuidString + UUID().uuidString
        let keyFile = try folder.write("pseudonym.key", key, mode: 0o644)
        var environment = Self.environment
        for name in environment.keys where name.hasPrefix("DICOM_ETL_") || name.hasPrefix("AWS_") { environment[name] = nil }
        // Under timeout(1): a daemon that wrongly started would run until stopped.
        let base = ["60", dicomETLBinary, "run", "--drop-folder", folder.path + "/drop", "--data-dir", folder.path + "/var", "--key-file", keyFile]

        // A key file others could read.
        let open = try runTool("/usr/bin/timeout", base, environment: environment)
        #expect(open.status != 0)
        #expect(open.output.contains("key_file_insecure") && open.output.contains("chmod 600 \(keyFile)"), "\(open.output)")
        #expect(!open.output.contains(key))
        #expect(!FileManager.default.fileExists(atPath: folder.path + "/var/postgres"), "nothing may start before the check")

        // Secrets as flags: refused, and not echoed.
        chmod(keyFile, 0o600)
        let password = "flag-password-" + UUID().uuidString
        for flags in [["--database-password", password], ["--storage-secret-access-key", password],
                      ["--database-url", "postgres://etl:\(password)@db.example.org/etl"],
                      ["--storage-url", "s3://b/p?endpoint=https://s3.example.org&secret_access_key=\(password)"]] {
            let refused = try runTool("/usr/bin/timeout", base + flags, environment: environment)
            #expect(refused.status != 0, "\(flags[0])")
            #expect(!refused.output.contains(password), "\(flags[0]) echoed the secret")
        }
    }
}
