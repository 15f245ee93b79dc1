// Tests of DaemonConfiguration: defaults, file, environment and flag precedence, secrets, errors.
import Foundation
import Ingest
import TestSupport
import Testing

@Suite struct ConfigurationTests {
    typealias Key = DaemonConfiguration.Key
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test func defaultsWithoutFileEnvironmentOrFlags() throws {
        let configuration = try DaemonConfiguration.load(yaml: nil, environment: [:])
        #expect(configuration == DaemonConfiguration())
        #expect(configuration.dropFolder == "./drop")
        #expect(configuration.databaseURL.isEmpty)
        #expect(configuration.processedFiles == .move)
        #expect(configuration.stableFileTime == .seconds(2))
        #expect(configuration.effectiveConcurrency == ProcessInfo.processInfo.activeProcessorCount)
        #expect(configuration.effectiveKeyFile == "./var/pseudonym.key")
        #expect(configuration.effectiveRecipesDirectory == "etl/normalize")
        #expect(try DaemonConfiguration.load(yaml: "routes_file: /srv/etl/routes.yaml", environment: [:]).effectiveRecipesDirectory == "/srv/etl/normalize")
        #expect(try DaemonConfiguration.load(yaml: nil, environment: ["DICOM_ETL_RECIPES": "/opt/recipes"]).effectiveRecipesDirectory == "/opt/recipes")
    }

    @Test func shippedDefaultFileEqualsBuiltInDefaults() throws {
        let text = try String(contentsOf: Self.packageRoot.appendingPathComponent("config/default.yaml"), encoding: .utf8)
        #expect(try DaemonConfiguration.load(yaml: text, environment: [:]) == DaemonConfiguration())
    }

    @Test func shippedDefaultFileDocumentsEveryNonSecretKey() throws {
        let text = try String(contentsOf: Self.packageRoot.appendingPathComponent("config/default.yaml"), encoding: .utf8)
        let lines = text.split(separator: "\n").map(String.init)
        for key in DaemonConfiguration.keys where !key.isSecret {
            let index = try #require(lines.firstIndex { $0.hasPrefix(key.name + ":") }, "\(key.name) missing")
            // Preceded by its comment, or by a key sharing the same comment block (ops_host, ops_port).
            let previous = try #require(lines[..<index].last { !$0.isEmpty })
            #expect(previous.hasPrefix("#") || DaemonConfiguration.keys.contains { previous.hasPrefix($0.name + ":") }, "\(key.name)")
        }
        for key in DaemonConfiguration.keys where key.isSecret {
            #expect(!lines.contains { $0.hasPrefix(key.name + ":") })
        }
    }

    @Test func productionTemplateVerifiesTLSAndHoldsNoSecret() throws {
        let text = try String(contentsOf: Self.packageRoot.appendingPathComponent("config/production.yaml"), encoding: .utf8)
        let configuration = try DaemonConfiguration.load(yaml: text, environment: [:])  // secret_in_file would throw
        let database = try #require(URLComponents(string: configuration.databaseURL))
        #expect(database.queryItems?.first { $0.name == "sslmode" }?.value == "verify-full")
        #expect(database.password == nil)
        let storage = try #require(URLComponents(string: configuration.storageURL))
        #expect(storage.queryItems?.first { $0.name == "endpoint" }?.value?.hasPrefix("https://") == true)
        #expect(!DaemonConfiguration.urlCarriesSecret(configuration.databaseURL) && !DaemonConfiguration.urlCarriesSecret(configuration.storageURL))
    }

    @Test func precedenceIsFlagOverEnvironmentOverFileOverDefault() throws {
        let yaml = """
            drop_folder: /file/drop
            data_dir: /file/data
            concurrency: 3
            batch_size: 100
            stable_file_seconds: 0.5
            log_level: error
            """
        let environment = [
            "DICOM_ETL_DROP_FOLDER": "/env/drop",
            "DICOM_ETL_DATABASE_URL": "postgres://u:pw@db/x",
            "DICOM_ETL_CONCURRENCY": "5",
            "DICOM_ETL_BATCH_SIZE": "200",
            "DICOM_ETL_LOG_LEVEL": "warning",
            "UNRELATED": "1",
        ]
        let flags = [
            ConfigurationFlag(Key.dropFolder, "/flag/drop"), ConfigurationFlag(Key.batchSize, 300),
            ConfigurationFlag(Key.logLevel, .debug),
        ]
        let configuration = try DaemonConfiguration.load(yaml: yaml, environment: environment, flags: flags)
        #expect(configuration.dropFolder == "/flag/drop")          // flag beats environment and file
        #expect(configuration.batchSize == 300 && configuration.logLevel == .debug)
        #expect(configuration.concurrency == 5)                     // environment beats file
        #expect(configuration.databaseURL == "postgres://u:pw@db/x") // environment may carry a password
        #expect(configuration.dataDirectory == "/file/data")        // file beats default
        #expect(configuration.stableFileTime == .milliseconds(500))
        #expect(configuration.rescanInterval == .seconds(30))       // default
    }

    @Test func everyKeyHasAnEnvironmentVariableAndEveryNonSecretAFlag() throws {
        #expect(DaemonConfiguration.key(named: "database_url")?.environmentVariable == "DICOM_ETL_DATABASE_URL")
        #expect(DaemonConfiguration.key(named: "storage_url")?.environmentVariable == "DICOM_ETL_STORAGE_URL")
        #expect(DaemonConfiguration.key(named: "key_file")?.environmentVariable == "DICOM_ETL_KEY_FILE")
        #expect(DaemonConfiguration.key(named: "data_dir")?.environmentVariable == "DICOM_ETL_DATA_DIR")
        #expect(DaemonConfiguration.key(named: "drop_folder")?.flag == "--drop-folder")
        let samples: [String: String] = [
            "drop_folder": "/d", "data_dir": "/v", "database_url": "postgres://h/db", "storage_url": "file:///s",
            "key_file": "/k", "profile": "p.yaml", "routes_file": "r.yaml", "recipes": "/n", "concurrency": "7",
            "stable_file_seconds": "4", "rescan_interval_seconds": "9", "series_quiet_seconds": "11",
            "file_arrival": "stability", "batch_size": "64", "uid_conflict_policy": "keep_both",
            "processed_files": "delete", "ops_host": "0.0.0.0", "ops_port": "0", "log_level": "debug",
            "log_format": "text", "sandbox_workers": "3", "sandbox_timeout_seconds": "5",
            "with_worker": "true", "models_dir": "/m", "serve": "on", "serve_host": "0.0.0.0", "serve_port": "8443",
            "serve_tokens_file": "/t", "serve_cors_origins": "https://viewer.example.org, https://ohif.example.org",
            "serve_tls_certificate": "/c.pem", "serve_tls_key": "/k.pem", "dicom_port": "11112", "dicom_host": "127.0.0.1",
            "ae_title": "ETL_SCP", "dicom_allowed_peers": "PACS@10.0.0.5, MODALITY", "dicom_max_associations": "8",
            "intake_min_free_bytes": "1000",
            "database_password": "pw", "storage_access_key_id": "AK", "storage_secret_access_key": "SK",
        ]
        #expect(Set(samples.keys) == Set(DaemonConfiguration.keys.map(\.name)))
        var environment: [String: String] = [:]
        for key in DaemonConfiguration.keys { environment[key.environmentVariable] = samples[key.name] }
        let fromEnvironment = try DaemonConfiguration.load(yaml: nil, environment: environment)
        let secretNames = Set(DaemonConfiguration.keys.filter(\.isSecret).map(\.name))
        let secretsFromEnvironment = environment.filter { name, _ in secretNames.contains { "DICOM_ETL_" + $0.uppercased() == name } }
        // The same values as flags, each of its key's type.
        let flags: [ConfigurationFlag] = [
            ConfigurationFlag(Key.dropFolder, "/d"), ConfigurationFlag(Key.dataDirectory, "/v"),
            ConfigurationFlag(Key.databaseURL, "postgres://h/db"), ConfigurationFlag(Key.storageURL, "file:///s"),
            ConfigurationFlag(Key.keyFile, "/k"), ConfigurationFlag(Key.profile, "p.yaml"), ConfigurationFlag(Key.routesFile, "r.yaml"),
            ConfigurationFlag(Key.recipesDirectory, "/n"),
            ConfigurationFlag(Key.concurrency, 7), ConfigurationFlag(Key.stableFileSeconds, 4), ConfigurationFlag(Key.rescanIntervalSeconds, 9),
            ConfigurationFlag(Key.seriesQuietSeconds, 11), ConfigurationFlag(Key.fileArrival, .stability), ConfigurationFlag(Key.batchSize, 64),
            ConfigurationFlag(Key.uidConflictPolicy, .keepBoth), ConfigurationFlag(Key.processedFiles, .delete),
            ConfigurationFlag(Key.opsHost, "0.0.0.0"), ConfigurationFlag(Key.opsPort, 0), ConfigurationFlag(Key.logLevel, .debug),
            ConfigurationFlag(Key.logFormat, .text), ConfigurationFlag(Key.sandboxWorkers, 3), ConfigurationFlag(Key.sandboxTimeoutSeconds, 5),
            ConfigurationFlag(Key.withWorker, true), ConfigurationFlag(Key.modelsDirectory, "/m"), ConfigurationFlag(Key.serve, true),
            ConfigurationFlag(Key.serveHost, "0.0.0.0"), ConfigurationFlag(Key.servePort, 8443), ConfigurationFlag(Key.serveTokensFile, "/t"),
            ConfigurationFlag(Key.serveCORSOrigins, ["https://viewer.example.org", "https://ohif.example.org"]),
            ConfigurationFlag(Key.serveTLSCertificate, "/c.pem"), ConfigurationFlag(Key.serveTLSKey, "/k.pem"),
            ConfigurationFlag(Key.dicomPort, 11112), ConfigurationFlag(Key.dicomHost, "127.0.0.1"), ConfigurationFlag(Key.aeTitle, "ETL_SCP"),
            ConfigurationFlag(Key.dicomAllowedPeers, try Key.dicomAllowedPeers.value(parsing: "PACS@10.0.0.5, MODALITY")),
            ConfigurationFlag(Key.dicomMaxAssociations, 8), ConfigurationFlag(Key.intakeMinFreeBytes, 1000),
        ]
        #expect(Set(flags.map(\.name)) == Set(samples.keys).subtracting(secretNames))
        #expect(flags.count == Set(flags.map(\.name)).count)
        let fromFlags = try DaemonConfiguration.load(yaml: nil, environment: secretsFromEnvironment, flags: flags)
        #expect(fromEnvironment == fromFlags)
        #expect(fromFlags != DaemonConfiguration())
        #expect(fromFlags.dropFolder == "/d")
        #expect(fromFlags.effectiveRecipesDirectory == "/n")
        #expect(fromFlags.processedFiles == .delete)
        #expect(fromFlags.logLevel == .debug)
        #expect(fromFlags.logFormat == .text)
        #expect(fromFlags.fileArrival == .stability && fromFlags.batchSize == 64 && fromFlags.uidConflictPolicy == .keepBoth)
        #expect(fromFlags.opsPort == 0)
        #expect(fromFlags.sandboxTimeout == .seconds(5))
        #expect(fromFlags.seriesQuietPeriod == .seconds(11))
        #expect(fromFlags.storageSecretAccessKey == "SK")
        #expect(fromFlags.effectiveConcurrency == 7)
        #expect(fromFlags.effectiveSandboxWorkers == 3)
        #expect(fromFlags.withWorker && fromFlags.modelsDirectory == "/m")
        #expect(fromFlags.serve && fromFlags.servePort == 8443 && fromFlags.effectiveServeTokensFile == "/t")
        #expect(fromFlags.serveCORSOrigins == ["https://viewer.example.org", "https://ohif.example.org"])
    }

    @Test func withWorkerIsABooleanFromFileEnvironmentOrFlag() throws {
        #expect(try DaemonConfiguration.load(yaml: "with_worker: true", environment: [:]).withWorker)
        #expect(try DaemonConfiguration.load(yaml: "with_worker: yes", environment: [:]).withWorker)
        #expect(try !DaemonConfiguration.load(yaml: "with_worker: true", environment: ["DICOM_ETL_WITH_WORKER": "0"]).withWorker)
        #expect(try DaemonConfiguration.load(
            yaml: nil, environment: ["DICOM_ETL_WITH_WORKER": "false"], flags: [ConfigurationFlag(Key.withWorker, true)]).withWorker)
        #expect(throws: ConfigurationError(.invalidValue, key: "with_worker")) {
            try DaemonConfiguration.load(yaml: nil, environment: ["DICOM_ETL_WITH_WORKER": "maybe"])
        }
    }

    @Test func secretsAreRefusedInTheFile() {
        #expect(throws: ConfigurationError(.secretInFile, key: "database_password")) {
            try DaemonConfiguration.load(yaml: "database_password: hunter2", environment: [:])
        }
        #expect(throws: ConfigurationError(.secretInFile, key: "database_url")) {
            try DaemonConfiguration.load(yaml: "database_url: postgres://etl:hunter2@db/etl", environment: [:])
        }
        #expect(throws: ConfigurationError(.secretInFile, key: "storage_url")) {
            try DaemonConfiguration.load(yaml: "storage_url: s3://b/p?secret_access_key=x", environment: [:])
        }
        // A URL without a password is fine in the file.
        #expect((try? DaemonConfiguration.load(yaml: "database_url: postgres://etl@db/etl", environment: [:])) != nil)
    }

    @Test func secretsAreRefusedAsFlags() throws {
        for flag in [ConfigurationFlag(Key.databasePassword, "hunter2"), ConfigurationFlag(Key.storageAccessKeyID, "AK"),
                     ConfigurationFlag(Key.storageSecretAccessKey, "hunter2"),
                     ConfigurationFlag(Key.databaseURL, "postgres://etl:hunter2@db/etl"),
                     ConfigurationFlag(Key.storageURL, "s3://b/p?secret_access_key=hunter2")] {
            do {
                _ = try DaemonConfiguration.load(yaml: nil, environment: [:], flags: [ConfigurationFlag(Key.dropFolder, "/d"), flag])
                Issue.record("\(flag.name) was accepted as a flag")
            } catch {
                #expect(error == ConfigurationError(.secretOnCommandLine, key: flag.name))
                #expect(!error.description.contains("hunter2"))
            }
        }
        // The same values from the environment are accepted, and a URL without a password is a fine flag.
        #expect(try DaemonConfiguration.load(yaml: nil, environment: ["DICOM_ETL_DATABASE_URL": "postgres://etl:pw@db/etl"]).databaseURL != "")
        #expect(try DaemonConfiguration.load(
            yaml: nil, environment: [:], flags: [ConfigurationFlag(Key.databaseURL, "postgres://etl@db/etl")]).databaseURL == "postgres://etl@db/etl")
    }

    @Test func errorsNameTheKeyButNeverTheValue() {
        #expect(throws: ConfigurationError(.unknownKey, key: "drop_foldr")) {
            try DaemonConfiguration.load(yaml: "drop_foldr: /x", environment: [:])
        }
        #expect(throws: ConfigurationError(.invalidValue, key: "processed_files")) {
            try DaemonConfiguration.load(yaml: nil, environment: ["DICOM_ETL_PROCESSED_FILES": "archive"])
        }
        #expect(throws: ConfigurationError(.invalidValue, key: "file_arrival")) {
            try DaemonConfiguration.load(yaml: nil, environment: ["DICOM_ETL_FILE_ARRIVAL": "polling"])
        }
        #expect(throws: ConfigurationError(.invalidValue, key: "log_level")) {
            try DaemonConfiguration.load(yaml: "log_level: verbose", environment: [:])
        }
        #expect(throws: ConfigurationError(.invalidValue, key: "ops_port")) {
            try DaemonConfiguration.load(yaml: nil, environment: [:], flags: [ConfigurationFlag(Key.opsPort, 70000)])
        }
        #expect(throws: ConfigurationError(.invalidValue, key: "stable_file_seconds")) {
            try DaemonConfiguration.load(yaml: "stable_file_seconds: -1", environment: [:])
        }
        #expect(throws: ConfigurationError(.malformedFile)) {
            try DaemonConfiguration.load(yaml: "- a\n- b", environment: [:])
        }
        let error = ConfigurationError(.invalidValue, key: "drop_folder")
        #expect(error.description == "configuration error: invalid_value (key drop_folder)")
    }

    /// A typed flag goes through the checks the file's and the environment's text go through.
    @Test func typedFlagsAreCheckedAsTheFileAndTheEnvironmentAre() throws {
        let refused: [(ConfigurationFlag, String, String)] = [
            (ConfigurationFlag(Key.concurrency, 5000), "concurrency", "5000"),
            (ConfigurationFlag(Key.batchSize, 0), "batch_size", "0"),
            (ConfigurationFlag(Key.dicomMaxAssociations, 0), "dicom_max_associations", "0"),
            (ConfigurationFlag(Key.servePort, -1), "serve_port", "-1"),
            (ConfigurationFlag(Key.stableFileSeconds, -0.5), "stable_file_seconds", "-0.5"),
            (ConfigurationFlag(Key.rescanIntervalSeconds, 0), "rescan_interval_seconds", "0"),
            (ConfigurationFlag(Key.sandboxTimeoutSeconds, .infinity), "sandbox_timeout_seconds", "inf"),
            (ConfigurationFlag(Key.seriesQuietSeconds, 86_400 * 366), "series_quiet_seconds", "31622400"),
            (ConfigurationFlag(Key.dropFolder, ""), "drop_folder", ""),
            (ConfigurationFlag(Key.aeTitle, "ETL@10.0.0.5"), "ae_title", "ETL@10.0.0.5"),
            (ConfigurationFlag(Key.aeTitle, "ETL,PACS"), "ae_title", "ETL,PACS"),
        ]
        for (flag, name, text) in refused {
            #expect(throws: ConfigurationError(.invalidValue, key: name)) {
                try DaemonConfiguration.load(yaml: nil, environment: [:], flags: [flag])
            }
            #expect(throws: ConfigurationError(.invalidValue, key: name)) {
                try DaemonConfiguration.load(yaml: nil, environment: ["DICOM_ETL_" + name.uppercased(): text])
            }
            #expect(throws: ConfigurationError(.invalidValue, key: name)) {
                try DaemonConfiguration.load(yaml: "\(name): \"\(text)\"", environment: [:])
            }
        }
        // Accepted values are stored alike, whatever their source: trimmed AE title, seconds as a duration.
        let fromFlags = try DaemonConfiguration.load(yaml: nil, environment: [:], flags: [
            ConfigurationFlag(Key.aeTitle, " ETL_SCP "), ConfigurationFlag(Key.stableFileSeconds, 0.25),
            ConfigurationFlag(Key.concurrency, 1024), ConfigurationFlag(Key.batchSize, 1),
        ])
        let fromEnvironment = try DaemonConfiguration.load(yaml: nil, environment: [
            "DICOM_ETL_AE_TITLE": " ETL_SCP ", "DICOM_ETL_STABLE_FILE_SECONDS": "0.25", "DICOM_ETL_CONCURRENCY": "1024",
            "DICOM_ETL_BATCH_SIZE": "1",
        ])
        #expect(fromFlags == fromEnvironment)
        #expect(fromFlags.aeTitle == "ETL_SCP" && fromFlags.stableFileTime == .milliseconds(250))
        // Text that does not parse as the key's type names the key too; choices take any case.
        #expect(throws: ConfigurationError(.invalidValue, key: "concurrency")) { try Key.concurrency.value(parsing: "many") }
        #expect(throws: ConfigurationError(.invalidValue, key: "dicom_allowed_peers")) { try Key.dicomAllowedPeers.value(parsing: "PACS@") }
        #expect(try Key.fileArrival.value(parsing: "EVENTS") == .events)
        #expect(try Key.uidConflictPolicy.value(parsing: "Keep_Both") == .keepBoth)
    }

    /// The built `dicom-etl run`: a flag per non-secret key, and a flag out of its key's range refused at once,
    /// naming the key.
    @Test func daemonFlagsAreTheKeysAndAreChecked() throws {
        let binary = DaemonEndToEndTests.daemonPath
        try #require(FileManager.default.isExecutableFile(atPath: binary), "swift build builds dicom-etl")
        let help = try Self.run(binary, ["run", "--help"])
        #expect(help.status == 0)
        for key in DaemonConfiguration.keys {
            // Whole words: --serve must not be taken for --serve-host.
            let listed = help.output.range(of: "\\Q\(key.flag)\\E(?![a-z-])", options: .regularExpression) != nil
            #expect(listed == !key.isSecret, "\(key.flag)")
        }
        for (arguments, name) in [(["--concurrency", "5000"], "concurrency"), (["--batch-size", "0"], "batch_size"),
                                  (["--stable-file-seconds=-1"], "stable_file_seconds"), (["--ae-title", "A@B"], "ae_title"),
                                  (["--dicom-allowed-peers", "PACS@"], "dicom_allowed_peers"),
                                  (["--database-url", "postgres://etl:hunter2@db/etl"], "database_url")] {
            let refused = try Self.run(binary, ["run", "--drop-folder", "/nonexistent/drop"] + arguments)
            #expect(refused.status == 64, "\(arguments)")
            #expect(refused.output.contains("(key \(name))"), "\(refused.output)")
            #expect(!refused.output.contains("hunter2"))
        }
        // A choice that is not one is refused by the option itself; one in capitals is taken as the file takes it.
        let badLevel = try Self.run(binary, ["run", "--log-level", "verbose"])
        #expect(badLevel.status == 64 && badLevel.output.contains("--log-level"), "\(badLevel.output)")
        let capitals = try Self.run(binary, ["run", "--log-level", "DEBUG", "--batch-size", "0"])
        #expect(capitals.output.contains("(key batch_size)"), "\(capitals.output)")
    }

    /// Runs `binary` without DICOM_ETL_* variables; its status and its standard output and error together.
    static func run(_ binary: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try runInterleaved(binary, arguments, environment: ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("DICOM_ETL_") })
    }
}
