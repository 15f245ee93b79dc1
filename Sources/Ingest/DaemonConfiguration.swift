// The daemon's configuration: defaults, a YAML file, DICOM_ETL_* environment variables and
// command-line flags, merged with the precedence flag > environment > file > default.
import CodedErrors
import Catalog
import DicomNetwork
import Foundation
import Logging
import Yams

/// Everything `dicom-etl run` needs to know about where it runs. Read once at start.
public struct DaemonConfiguration: Sendable, Equatable {
    /// What happens to a source file once it has been ingested (or recognised as a duplicate).
    public enum ProcessedFilePolicy: String, Sendable, CaseIterable {
        /// Moved to `processed/` inside the drop folder, keeping its relative path.
        case move
        /// Deleted.
        case delete
    }

    /// How a file is known to be completely written.
    public enum FileArrival: String, Sendable, CaseIterable {
        /// `events`, unless the drop folder is on a network filesystem (NFS, SMB/CIFS, FUSE) or inotify is unavailable.
        case auto
        /// A file closed after writing or renamed into the folder is taken at once (inotify); files found by
        /// rescans wait for the stable time.
        case events
        /// Every file waits until its size and modification time have not changed for the stable time.
        case stability
    }

    /// The log line format.
    public enum LogFormat: String, Sendable, CaseIterable {
        /// One JSON object per line.
        case json
        /// swift-log's plain text format.
        case text
    }

    /// The folder the PACS exports into; watched with its subfolders.
    public var dropFolder = "./drop"
    /// The daemon's own data: embedded PostgreSQL cluster, filesystem object store.
    public var dataDirectory = "./var"
    /// PostgreSQL URL; empty runs an embedded cluster inside `dataDirectory`.
    public var databaseURL = ""
    /// Object store URL (`s3://bucket/prefix?endpoint=…&region=…` or `file:///path`); empty uses a filesystem store in `dataDirectory`.
    public var storageURL = ""
    /// File holding the pseudonymisation key; empty means `<data dir>/pseudonym.key`.
    public var keyFile = ""
    /// De-identification profile.
    public var profile = "etl/deidentify/basic.yaml"
    /// Which series go to which model.
    public var routesFile = "etl/routes.yaml"
    /// Files processed at once; 0 means one per core.
    public var concurrency = 0
    /// How a file is known to be completely written.
    public var fileArrival: FileArrival = .auto
    /// How long a file's size and modification time must stay unchanged before it is taken (every file with
    /// `stability` arrival; with `events`, files found by a rescan rather than an event).
    public var stableFileTime: Duration = .seconds(2)
    /// The most files the pipeline takes in one batch (one claim, one sandbox exchange, one catalogue commit).
    public var batchSize = 512
    /// What to do with a file whose SOP Instance UID is already catalogued with other content.
    public var uidConflictPolicy: UIDConflictPolicy = .quarantine
    /// Interval of the full rescan of the drop folder (network shares deliver no inotify events).
    public var rescanInterval: Duration = .seconds(30)
    /// A series is complete once no new instance has arrived for this long.
    public var seriesQuietPeriod: Duration = .seconds(10)
    /// What happens to ingested source files.
    public var processedFiles: ProcessedFilePolicy = .move
    /// Address the operations HTTP server binds to.
    public var opsHost = "127.0.0.1"
    /// Port of the operations HTTP server (`/metrics`, `/healthz`, `/readyz`); 0 picks a free port.
    public var opsPort = 9090
    /// Minimum log level.
    public var logLevel: Logger.Level = .info
    /// Log line format.
    public var logFormat: LogFormat = .json
    /// Long-lived sandbox processes that run crash-prone parsing; 0 means one per pipeline slot.
    public var sandboxWorkers = 0
    /// A sandboxed job running longer than this is killed and its file quarantined.
    public var sandboxTimeout: Duration = .seconds(60)
    /// Runs the inference worker inside the daemon, on the daemon's database and object store.
    public var withWorker = false
    /// Trained models, as `<models dir>/<model>/<version>/`: the worker loads every model the routes name.
    public var modelsDirectory = "models/trained_models"
    /// Runs the archive's HTTP server (DICOMweb, results API and page) inside the daemon.
    public var serve = false
    /// Address the archive's HTTP server binds to.
    public var serveHost = "127.0.0.1"
    /// Port of the archive's HTTP server; 0 picks a free port.
    public var servePort = 8080
    /// The bearer tokens file (SHA-256 hashes and roles); empty means `<data dir>/tokens`.
    public var serveTokensFile = ""
    /// Origins a browser viewer may call the server from (CORS); `*` for any.
    public var serveCORSOrigins: [String] = []
    /// PEM certificate chain for native TLS (with `serveTLSKey`); empty: plain HTTP behind a TLS proxy.
    public var serveTLSCertificate = ""
    /// PEM private key for native TLS.
    public var serveTLSKey = ""

    /// Port of the DICOM Storage SCP (C-STORE, C-ECHO); 0 leaves it off.
    public var dicomPort = 0
    /// Address the Storage SCP binds to.
    public var dicomHost = "0.0.0.0"
    /// The Storage SCP's AE title (the called AE title senders use).
    public var aeTitle = "DICOM_ETL"
    /// Calling AE titles with the host each may come from (`AE@10.0.0.5`, `AE@*`); others are rejected.
    public var dicomAllowedPeers: [AllowedPeer] = []
    /// Associations served at once; more are rejected (transient).
    public var dicomMaxAssociations = 32
    /// Received instances (C-STORE, STOW-RS) are refused while free space under the drop folder is below this.
    public var intakeMinFreeBytes: UInt64 = 1 << 30

    /// Database password (environment only: never the file, never a flag).
    public var databasePassword: String?
    /// Object store access key ID (environment only).
    public var storageAccessKeyID: String?
    /// Object store secret access key (environment only).
    public var storageSecretAccessKey: String?

    /// The defaults.
    public init() {}

    /// `concurrency`, with 0 resolved to the number of active processors.
    public var effectiveConcurrency: Int {
        concurrency > 0 ? concurrency : max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// `sandboxWorkers`, with 0 resolved to `effectiveConcurrency`.
    public var effectiveSandboxWorkers: Int {
        sandboxWorkers > 0 ? sandboxWorkers : effectiveConcurrency
    }

    /// `serveTokensFile`, with empty resolved to `<data dir>/tokens`.
    public var effectiveServeTokensFile: String {
        serveTokensFile.isEmpty ? (dataDirectory as NSString).appendingPathComponent("tokens") : serveTokensFile
    }

    /// `keyFile`, with empty resolved to `<data dir>/pseudonym.key`.
    public var effectiveKeyFile: String {
        keyFile.isEmpty ? (dataDirectory as NSString).appendingPathComponent("pseudonym.key") : keyFile
    }
}

/// Why the configuration could not be loaded. The description names the key, never a value.
public struct ConfigurationError: CodedError, Equatable {
    /// Machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The file has a key the daemon does not know (a typo, most often).
        public static let unknownKey = Code(rawValue: "unknown_key")
        /// A value does not parse as the key's type or range.
        public static let invalidValue = Code(rawValue: "invalid_value")
        /// A secret was found in the configuration file.
        public static let secretInFile = Code(rawValue: "secret_in_file")
        /// A secret was given as a command-line flag, which every user of the host can read in the process list.
        public static let secretOnCommandLine = Code(rawValue: "secret_on_command_line")
        /// The file could not be read.
        public static let unreadableFile = Code(rawValue: "unreadable_file")
        /// The file is not a YAML mapping.
        public static let malformedFile = Code(rawValue: "malformed_file")
    }

    /// Machine-readable reason.
    public let code: Code
    /// The configuration key concerned, if any (key names carry no data).
    public let key: String?

    public init(_ code: Code, key: String? = nil) {
        self.code = code
        self.key = key
    }

    public var description: String {
        var text = "configuration error: \(code.rawValue)"
        if let key { text += " (key \(key))" }
        if code == .secretOnCommandLine {
            text += ": secrets come from the environment or from files (chmod 600), never from flags, which any user"
                + " of the host can read in the process list"
        }
        return text
    }
}

/// One configuration key: its YAML name, environment variable and flag, and how it is applied.
public struct ConfigurationKey: Sendable {
    /// Name in the YAML file, e.g. `drop_folder`.
    public let name: String
    /// True for secrets: accepted from the environment only, refused in the file and as flags.
    public let isSecret: Bool
    let apply: @Sendable (inout DaemonConfiguration, String) throws -> Void

    init(_ name: String, secret: Bool = false, _ apply: @escaping @Sendable (inout DaemonConfiguration, String) throws -> Void) {
        self.name = name
        self.isSecret = secret
        self.apply = apply
    }

    /// Environment variable, e.g. `DICOM_ETL_DROP_FOLDER`.
    public var environmentVariable: String { "DICOM_ETL_" + name.uppercased() }
    /// Command-line flag, e.g. `--drop-folder`.
    public var flag: String { "--" + name.replacingOccurrences(of: "_", with: "-") }
}

extension DaemonConfiguration {
    /// Every key, in the order of `config/default.yaml`.
    public static let keys: [ConfigurationKey] = [
        ConfigurationKey("drop_folder") { $0.dropFolder = try nonEmpty($1, "drop_folder") },
        ConfigurationKey("data_dir") { $0.dataDirectory = try nonEmpty($1, "data_dir") },
        ConfigurationKey("database_url") { $0.databaseURL = $1 },
        ConfigurationKey("storage_url") { $0.storageURL = $1 },
        ConfigurationKey("key_file") { $0.keyFile = $1 },
        ConfigurationKey("profile") { $0.profile = try nonEmpty($1, "profile") },
        ConfigurationKey("routes_file") { $0.routesFile = try nonEmpty($1, "routes_file") },
        ConfigurationKey("concurrency") { $0.concurrency = try integer($1, "concurrency", in: 0...1024) },
        ConfigurationKey("file_arrival") {
            guard let arrival = FileArrival(rawValue: $1.lowercased()) else { throw ConfigurationError(.invalidValue, key: "file_arrival") }
            $0.fileArrival = arrival
        },
        ConfigurationKey("stable_file_seconds") { $0.stableFileTime = try seconds($1, "stable_file_seconds") },
        ConfigurationKey("batch_size") { $0.batchSize = try integer($1, "batch_size", in: 1...4096) },
        ConfigurationKey("uid_conflict_policy") {
            guard let policy = UIDConflictPolicy(rawValue: $1.lowercased()) else { throw ConfigurationError(.invalidValue, key: "uid_conflict_policy") }
            $0.uidConflictPolicy = policy
        },
        ConfigurationKey("rescan_interval_seconds") {
            $0.rescanInterval = try seconds($1, "rescan_interval_seconds", minimum: 0.01)
        },
        ConfigurationKey("series_quiet_seconds") { $0.seriesQuietPeriod = try seconds($1, "series_quiet_seconds") },
        ConfigurationKey("processed_files") {
            guard let policy = ProcessedFilePolicy(rawValue: $1.lowercased()) else {
                throw ConfigurationError(.invalidValue, key: "processed_files")
            }
            $0.processedFiles = policy
        },
        ConfigurationKey("ops_host") { $0.opsHost = try nonEmpty($1, "ops_host") },
        ConfigurationKey("ops_port") { $0.opsPort = try integer($1, "ops_port", in: 0...65535) },
        ConfigurationKey("log_level") {
            guard let level = Logger.Level(rawValue: $1.lowercased()) else {
                throw ConfigurationError(.invalidValue, key: "log_level")
            }
            $0.logLevel = level
        },
        ConfigurationKey("log_format") {
            guard let format = LogFormat(rawValue: $1.lowercased()) else {
                throw ConfigurationError(.invalidValue, key: "log_format")
            }
            $0.logFormat = format
        },
        ConfigurationKey("sandbox_workers") { $0.sandboxWorkers = try integer($1, "sandbox_workers", in: 0...1024) },
        ConfigurationKey("sandbox_timeout_seconds") {
            $0.sandboxTimeout = try seconds($1, "sandbox_timeout_seconds", minimum: 0.001)
        },
        ConfigurationKey("with_worker") { $0.withWorker = try boolean($1, "with_worker") },
        ConfigurationKey("models_dir") { $0.modelsDirectory = try nonEmpty($1, "models_dir") },
        ConfigurationKey("serve") { $0.serve = try boolean($1, "serve") },
        ConfigurationKey("serve_host") { $0.serveHost = try nonEmpty($1, "serve_host") },
        ConfigurationKey("serve_port") { $0.servePort = try integer($1, "serve_port", in: 0...65535) },
        ConfigurationKey("serve_tokens_file") { $0.serveTokensFile = $1 },
        ConfigurationKey("serve_cors_origins") {
            $0.serveCORSOrigins = $1.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        },
        ConfigurationKey("serve_tls_certificate") { $0.serveTLSCertificate = $1 },
        ConfigurationKey("serve_tls_key") { $0.serveTLSKey = $1 },
        ConfigurationKey("dicom_port") { $0.dicomPort = try integer($1, "dicom_port", in: 0...65535) },
        ConfigurationKey("dicom_host") { $0.dicomHost = try nonEmpty($1, "dicom_host") },
        ConfigurationKey("ae_title") {
            let title = $1.trimmingCharacters(in: .whitespaces)
            guard AllowedPeer.parseList(title)?.count == 1, !title.contains("@"), !title.contains(",") else {
                throw ConfigurationError(.invalidValue, key: "ae_title")
            }
            $0.aeTitle = title
        },
        ConfigurationKey("dicom_allowed_peers") {
            guard let peers = AllowedPeer.parseList($1) else { throw ConfigurationError(.invalidValue, key: "dicom_allowed_peers") }
            $0.dicomAllowedPeers = peers
        },
        ConfigurationKey("dicom_max_associations") { $0.dicomMaxAssociations = try integer($1, "dicom_max_associations", in: 1...4096) },
        ConfigurationKey("intake_min_free_bytes") {
            guard let bytes = UInt64($1.trimmingCharacters(in: .whitespaces)) else { throw ConfigurationError(.invalidValue, key: "intake_min_free_bytes") }
            $0.intakeMinFreeBytes = bytes
        },
        ConfigurationKey("database_password", secret: true) { $0.databasePassword = $1 },
        ConfigurationKey("storage_access_key_id", secret: true) { $0.storageAccessKeyID = $1 },
        ConfigurationKey("storage_secret_access_key", secret: true) { $0.storageSecretAccessKey = $1 },
    ]

    /// Looks a key up by its YAML name.
    public static func key(named name: String) -> ConfigurationKey? {
        keys.first { $0.name == name }
    }

    /// Merges defaults, the YAML text, the environment and the flags (by key name), in rising precedence.
    /// Secrets are refused in the file (`secret_in_file`) and among the flags (`secret_on_command_line`), as is
    /// a URL holding a password or secret in either.
    /// - Parameters:
    ///   - yaml: contents of the configuration file, or nil for none.
    ///   - environment: the process environment; only `DICOM_ETL_<KEY>` variables are read.
    ///   - flags: values given on the command line, by key name (`drop_folder`).
    public static func load(
        yaml: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        flags: [String: String] = [:]
    ) throws(ConfigurationError) -> DaemonConfiguration {
        var configuration = DaemonConfiguration()
        if let yaml {
            for (name, value) in try fileValues(yaml) {
                guard let key = key(named: name) else { throw ConfigurationError(.unknownKey, key: name) }
                if key.isSecret { throw ConfigurationError(.secretInFile, key: name) }
                try apply(key, value, to: &configuration)
            }
            if urlCarriesSecret(configuration.databaseURL) || urlCarriesSecret(configuration.storageURL) {
                throw ConfigurationError(.secretInFile, key: urlCarriesSecret(configuration.databaseURL) ? "database_url" : "storage_url")
            }
        }
        for key in keys {
            if let value = environment[key.environmentVariable] { try apply(key, value, to: &configuration) }
        }
        for (name, value) in flags.sorted(by: { $0.key < $1.key }) {
            guard let key = key(named: name) else { throw ConfigurationError(.unknownKey, key: name) }
            if key.isSecret || urlCarriesSecret(value) && (name == "database_url" || name == "storage_url") {
                throw ConfigurationError(.secretOnCommandLine, key: name)
            }
            try apply(key, value, to: &configuration)
        }
        return configuration
    }

    /// Reads the file at `path` (if any) and merges it as `load(yaml:environment:flags:)` does.
    public static func load(
        file path: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        flags: [String: String] = [:]
    ) throws(ConfigurationError) -> DaemonConfiguration {
        guard let path else { return try load(yaml: nil, environment: environment, flags: flags) }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch { throw ConfigurationError(.unreadableFile) }
        return try load(yaml: text, environment: environment, flags: flags)
    }

    private static func apply(_ key: ConfigurationKey, _ value: String, to configuration: inout DaemonConfiguration) throws(ConfigurationError) {
        do { try key.apply(&configuration, value) } catch let error as ConfigurationError { throw error } catch {
            throw ConfigurationError(.invalidValue, key: key.name)
        }
    }

    /// The file's top-level mapping with every scalar as text; null values are skipped (default kept).
    private static func fileValues(_ yaml: String) throws(ConfigurationError) -> [(String, String)] {
        let loaded: Any?
        do { loaded = try Yams.load(yaml: yaml) } catch { throw ConfigurationError(.malformedFile) }
        guard let loaded else { return [] }
        guard let mapping = loaded as? [String: Any] else { throw ConfigurationError(.malformedFile) }
        var values: [(String, String)] = []
        for (name, value) in mapping.sorted(by: { $0.key < $1.key }) {
            switch value {
            case let string as String: values.append((name, string))
            case let bool as Bool: values.append((name, bool ? "true" : "false"))
            case let int as Int: values.append((name, String(int)))
            case let double as Double: values.append((name, String(double)))
            case is NSNull: continue
            default: throw ConfigurationError(.invalidValue, key: name)
            }
        }
        return values
    }

    /// True when a database or storage URL holds a password (`user:password@`) or a secret query parameter.
    public static func urlCarriesSecret(_ url: String) -> Bool {
        guard !url.isEmpty else { return false }
        // A URL that does not parse may still hold `user:password@`: refused rather than let through.
        guard let components = URLComponents(string: url) else { return url.contains("@") }
        if let password = components.password, !password.isEmpty { return true }
        let secretParameters: Set<String> = [
            "password", "sslpassword", "secret", "secret_access_key", "secretaccesskey", "session_token", "token",
        ]
        return components.queryItems?.contains { secretParameters.contains($0.name.lowercased()) } ?? false
    }
}

private func nonEmpty(_ value: String, _ key: String) throws -> String {
    guard !value.isEmpty else { throw ConfigurationError(.invalidValue, key: key) }
    return value
}

private func integer(_ value: String, _ key: String, in range: ClosedRange<Int>) throws -> Int {
    guard let number = Int(value.trimmingCharacters(in: .whitespaces)), range.contains(number) else {
        throw ConfigurationError(.invalidValue, key: key)
    }
    return number
}

private func boolean(_ value: String, _ key: String) throws -> Bool {
    switch value.trimmingCharacters(in: .whitespaces).lowercased() {
    case "true", "yes", "on", "1": return true
    case "false", "no", "off", "0": return false
    default: throw ConfigurationError(.invalidValue, key: key)
    }
}

private func seconds(_ value: String, _ key: String, minimum: Double = 0) throws -> Duration {
    guard let number = Double(value.trimmingCharacters(in: .whitespaces)), number.isFinite, number >= minimum,
          number <= 86_400 * 365
    else { throw ConfigurationError(.invalidValue, key: key) }
    return .nanoseconds(Int64((number * 1e9).rounded()))
}
