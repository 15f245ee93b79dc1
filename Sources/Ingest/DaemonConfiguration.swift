// The daemon's configuration: defaults, a YAML file, DICOM_ETL_* environment variables and
// command-line flags, merged with the precedence flag > environment > file > default.
import CodedErrors
import Catalog
import DicomNetwork
import Foundation
import Logging
import Operations
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

    /// The log line format (the worker's and the server's too).
    public typealias LogFormat = Operations.LogFormat

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
    /// The normalisation recipes' folder; empty means `normalize/` beside the routes file.
    public var recipesDirectory = ""
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

    /// `recipesDirectory`, with empty resolved to `normalize/` beside the routes file.
    public var effectiveRecipesDirectory: String {
        recipesDirectory.isEmpty
            ? ((routesFile as NSString).deletingLastPathComponent as NSString).appendingPathComponent("normalize") : recipesDirectory
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

/// A key's names in the file, the environment and on the command line.
public protocol ConfigurationKeyNames: Sendable {
    /// Name in the YAML file, e.g. `drop_folder`.
    var name: String { get }
}

extension ConfigurationKeyNames {
    /// Environment variable, e.g. `DICOM_ETL_DROP_FOLDER`.
    public var environmentVariable: String { "DICOM_ETL_" + name.uppercased() }
    /// Command-line flag, e.g. `--drop-folder`.
    public var flag: String { "--" + name.replacingOccurrences(of: "_", with: "-") }
}

/// How a key's value is read from text (the file, the environment) and checked, whatever its source: `Value` is
/// the key's type (what a flag carries), `Stored` what the configuration holds (seconds become a `Duration`).
struct ConfigurationValueFormat<Value: Sendable, Stored: Sendable>: Sendable {
    /// The text as the key's type; nil when it does not parse.
    let parse: @Sendable (String) -> Value?
    /// The value to store; nil when it is out of the key's range.
    let check: @Sendable (Value) -> Stored?
}

/// One configuration key with its value's type: how the file's and the environment's text parse into it, which
/// values it admits (from any source) and where it goes in `DaemonConfiguration`.
public struct ConfigurationKey<Value: Sendable>: ConfigurationKeyNames {
    public let name: String
    /// True for secrets: accepted from the environment only, refused in the file and as flags.
    public let isSecret: Bool
    let parse: @Sendable (String) -> Value?
    let store: @Sendable (inout DaemonConfiguration, Value) -> Bool
    /// True for a value that holds a secret (a URL with a password): refused in the file and as a flag.
    let holdsSecret: @Sendable (Value) -> Bool

    init<Stored>(
        _ name: String, _ path: any WritableKeyPath<DaemonConfiguration, Stored> & Sendable, _ format: ConfigurationValueFormat<Value, Stored>,
        secret: Bool = false, holdsSecret: @escaping @Sendable (Value) -> Bool = { _ in false }
    ) {
        self.name = name
        self.isSecret = secret
        self.parse = format.parse
        self.store = { configuration, value in
            guard let stored = format.check(value) else { return false }
            configuration[keyPath: path] = stored
            return true
        }
        self.holdsSecret = holdsSecret
    }

    /// The text of the file or the environment as the key's type; `invalid_value` naming the key when it does not
    /// parse (range checks come with `set`).
    public func value(parsing text: String) throws(ConfigurationError) -> Value {
        guard let value = parse(text) else { throw ConfigurationError(.invalidValue, key: name) }
        return value
    }

    /// Stores `value` in `configuration` after the key's checks; `invalid_value` naming the key when it is out of range.
    public func set(_ value: Value, in configuration: inout DaemonConfiguration) throws(ConfigurationError) {
        guard store(&configuration, value) else { throw ConfigurationError(.invalidValue, key: name) }
    }
}

/// A configuration key whatever its type: read from text, as the file and the environment give it.
public struct AnyConfigurationKey: ConfigurationKeyNames {
    public let name: String
    /// True for secrets: accepted from the environment only, refused in the file and as flags.
    public let isSecret: Bool
    let setText: @Sendable (inout DaemonConfiguration, String) throws(ConfigurationError) -> Void
    let textHoldsSecret: @Sendable (String) -> Bool

    public init<Value>(_ key: ConfigurationKey<Value>) {
        name = key.name
        isSecret = key.isSecret
        setText = { configuration, text throws(ConfigurationError) in try key.set(try key.value(parsing: text), in: &configuration) }
        textHoldsSecret = { text in key.parse(text).map(key.holdsSecret) ?? false }
    }
}

/// A value given on the command line for one key, already of the key's type (`--concurrency 8`).
public struct ConfigurationFlag: Sendable {
    /// The key's name, e.g. `concurrency`.
    public let name: String
    /// A secret, or a value holding one: refused (`secret_on_command_line`).
    let isRefused: Bool
    let apply: @Sendable (inout DaemonConfiguration) throws(ConfigurationError) -> Void

    public init<Value>(_ key: ConfigurationKey<Value>, _ value: Value) {
        name = key.name
        isRefused = key.isSecret || key.holdsSecret(value)
        apply = { configuration throws(ConfigurationError) in try key.set(value, in: &configuration) }
    }
}

extension DaemonConfiguration {
    /// The keys with their types, by property.
    public enum Key {
        public static let dropFolder = ConfigurationKey("drop_folder", \.dropFolder, .nonEmptyText)
        public static let dataDirectory = ConfigurationKey("data_dir", \.dataDirectory, .nonEmptyText)
        public static let databaseURL = ConfigurationKey("database_url", \.databaseURL, .text, holdsSecret: { DaemonConfiguration.urlCarriesSecret($0) })
        public static let storageURL = ConfigurationKey("storage_url", \.storageURL, .text, holdsSecret: { DaemonConfiguration.urlCarriesSecret($0) })
        public static let keyFile = ConfigurationKey("key_file", \.keyFile, .text)
        public static let profile = ConfigurationKey("profile", \.profile, .nonEmptyText)
        public static let routesFile = ConfigurationKey("routes_file", \.routesFile, .nonEmptyText)
        public static let recipesDirectory = ConfigurationKey("recipes", \.recipesDirectory, .text)
        public static let concurrency = ConfigurationKey("concurrency", \.concurrency, .integer(in: 0...1024))
        public static let fileArrival = ConfigurationKey("file_arrival", \.fileArrival, .choice)
        public static let stableFileSeconds = ConfigurationKey("stable_file_seconds", \.stableFileTime, .seconds())
        public static let batchSize = ConfigurationKey("batch_size", \.batchSize, .integer(in: 1...4096))
        public static let uidConflictPolicy = ConfigurationKey("uid_conflict_policy", \.uidConflictPolicy, .choice)
        public static let rescanIntervalSeconds = ConfigurationKey("rescan_interval_seconds", \.rescanInterval, .seconds(minimum: 0.01))
        public static let seriesQuietSeconds = ConfigurationKey("series_quiet_seconds", \.seriesQuietPeriod, .seconds())
        public static let processedFiles = ConfigurationKey("processed_files", \.processedFiles, .choice)
        public static let opsHost = ConfigurationKey("ops_host", \.opsHost, .nonEmptyText)
        public static let opsPort = ConfigurationKey("ops_port", \.opsPort, .integer(in: 0...65535))
        public static let logLevel = ConfigurationKey("log_level", \.logLevel, .choice)
        public static let logFormat = ConfigurationKey("log_format", \.logFormat, .choice)
        public static let sandboxWorkers = ConfigurationKey("sandbox_workers", \.sandboxWorkers, .integer(in: 0...1024))
        public static let sandboxTimeoutSeconds = ConfigurationKey("sandbox_timeout_seconds", \.sandboxTimeout, .seconds(minimum: 0.001))
        public static let withWorker = ConfigurationKey("with_worker", \.withWorker, .boolean)
        public static let modelsDirectory = ConfigurationKey("models_dir", \.modelsDirectory, .nonEmptyText)
        public static let serve = ConfigurationKey("serve", \.serve, .boolean)
        public static let serveHost = ConfigurationKey("serve_host", \.serveHost, .nonEmptyText)
        public static let servePort = ConfigurationKey("serve_port", \.servePort, .integer(in: 0...65535))
        public static let serveTokensFile = ConfigurationKey("serve_tokens_file", \.serveTokensFile, .text)
        public static let serveCORSOrigins = ConfigurationKey("serve_cors_origins", \.serveCORSOrigins, .list)
        public static let serveTLSCertificate = ConfigurationKey("serve_tls_certificate", \.serveTLSCertificate, .text)
        public static let serveTLSKey = ConfigurationKey("serve_tls_key", \.serveTLSKey, .text)
        public static let dicomPort = ConfigurationKey("dicom_port", \.dicomPort, .integer(in: 0...65535))
        public static let dicomHost = ConfigurationKey("dicom_host", \.dicomHost, .nonEmptyText)
        public static let aeTitle = ConfigurationKey("ae_title", \.aeTitle, .aeTitle)
        public static let dicomAllowedPeers = ConfigurationKey("dicom_allowed_peers", \.dicomAllowedPeers, .peers)
        public static let dicomMaxAssociations = ConfigurationKey("dicom_max_associations", \.dicomMaxAssociations, .integer(in: 1...4096))
        public static let intakeMinFreeBytes = ConfigurationKey("intake_min_free_bytes", \.intakeMinFreeBytes, .bytes)
        public static let databasePassword = ConfigurationKey("database_password", \.databasePassword, .secret, secret: true)
        public static let storageAccessKeyID = ConfigurationKey("storage_access_key_id", \.storageAccessKeyID, .secret, secret: true)
        public static let storageSecretAccessKey = ConfigurationKey("storage_secret_access_key", \.storageSecretAccessKey, .secret, secret: true)
    }

    /// Every key, in the order of `config/default.yaml`.
    public static let keys: [AnyConfigurationKey] = [
        .init(Key.dropFolder), .init(Key.dataDirectory), .init(Key.databaseURL), .init(Key.storageURL), .init(Key.keyFile),
        .init(Key.profile), .init(Key.routesFile), .init(Key.recipesDirectory), .init(Key.concurrency),
        .init(Key.fileArrival), .init(Key.stableFileSeconds), .init(Key.batchSize), .init(Key.uidConflictPolicy),
        .init(Key.rescanIntervalSeconds), .init(Key.seriesQuietSeconds), .init(Key.processedFiles), .init(Key.opsHost),
        .init(Key.opsPort), .init(Key.logLevel), .init(Key.logFormat), .init(Key.sandboxWorkers),
        .init(Key.sandboxTimeoutSeconds), .init(Key.withWorker), .init(Key.modelsDirectory), .init(Key.serve),
        .init(Key.serveHost), .init(Key.servePort), .init(Key.serveTokensFile), .init(Key.serveCORSOrigins),
        .init(Key.serveTLSCertificate), .init(Key.serveTLSKey), .init(Key.dicomPort), .init(Key.dicomHost),
        .init(Key.aeTitle), .init(Key.dicomAllowedPeers), .init(Key.dicomMaxAssociations), .init(Key.intakeMinFreeBytes),
        .init(Key.databasePassword), .init(Key.storageAccessKeyID), .init(Key.storageSecretAccessKey),
    ]

    /// Looks a key up by its YAML name.
    public static func key(named name: String) -> AnyConfigurationKey? {
        keys.first { $0.name == name }
    }

    /// Merges defaults, the YAML text, the environment and the flags, in rising precedence. Text from the file and
    /// the environment is parsed into each key's type and goes through the same checks as a flag's value.
    /// Secrets are refused in the file (`secret_in_file`) and among the flags (`secret_on_command_line`), as is
    /// a URL holding a password or secret in either.
    /// - Parameters:
    ///   - yaml: contents of the configuration file, or nil for none.
    ///   - environment: the process environment; only `DICOM_ETL_<KEY>` variables are read.
    ///   - flags: values given on the command line, applied in order.
    public static func load(
        yaml: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        flags: [ConfigurationFlag] = []
    ) throws(ConfigurationError) -> DaemonConfiguration {
        var configuration = DaemonConfiguration()
        if let yaml {
            for (name, value) in try fileValues(yaml) {
                guard let key = key(named: name) else { throw ConfigurationError(.unknownKey, key: name) }
                if key.isSecret || key.textHoldsSecret(value) { throw ConfigurationError(.secretInFile, key: name) }
                try key.setText(&configuration, value)
            }
        }
        for key in keys {
            if let value = environment[key.environmentVariable] { try key.setText(&configuration, value) }
        }
        for flag in flags {
            if flag.isRefused { throw ConfigurationError(.secretOnCommandLine, key: flag.name) }
            try flag.apply(&configuration)
        }
        return configuration
    }

    /// Reads the file at `path` (if any) and merges it as `load(yaml:environment:flags:)` does.
    public static func load(
        file path: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        flags: [ConfigurationFlag] = []
    ) throws(ConfigurationError) -> DaemonConfiguration {
        guard let path else { return try load(yaml: nil, environment: environment, flags: flags) }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch { throw ConfigurationError(.unreadableFile) }
        return try load(yaml: text, environment: environment, flags: flags)
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

extension ConfigurationValueFormat where Value == String, Stored == String {
    /// Any text, the empty text included.
    static var text: Self { Self(parse: { $0 }, check: { $0 }) }

    /// Any text but the empty one.
    static var nonEmptyText: Self { Self(parse: { $0 }, check: { $0.isEmpty ? nil : $0 }) }

    /// An AE title alone (no `@host`, no list), without surrounding spaces.
    static var aeTitle: Self {
        Self(parse: { $0 }, check: { value in
            let title = value.trimmingCharacters(in: .whitespaces)
            guard AllowedPeer.parseList(title)?.count == 1, !title.contains("@"), !title.contains(",") else { return nil }
            return title
        })
    }
}

extension ConfigurationValueFormat where Value == String, Stored == String? {
    /// A secret, as given.
    static var secret: Self { Self(parse: { $0 }, check: { $0 }) }
}

extension ConfigurationValueFormat where Value == Int, Stored == Int {
    /// A whole number in `range`.
    static func integer(in range: ClosedRange<Int>) -> Self {
        Self(parse: { Int($0.trimmingCharacters(in: .whitespaces)) }, check: { range.contains($0) ? $0 : nil })
    }
}

extension ConfigurationValueFormat where Value == UInt64, Stored == UInt64 {
    /// A number of bytes.
    static var bytes: Self { Self(parse: { UInt64($0.trimmingCharacters(in: .whitespaces)) }, check: { $0 }) }
}

extension ConfigurationValueFormat where Value == Bool, Stored == Bool {
    /// `true`, `yes`, `on`, `1` or `false`, `no`, `off`, `0`, in any case.
    static var boolean: Self {
        Self(parse: { text in
            switch text.trimmingCharacters(in: .whitespaces).lowercased() {
            case "true", "yes", "on", "1": true
            case "false", "no", "off", "0": false
            default: nil
            }
        }, check: { $0 })
    }
}

extension ConfigurationValueFormat where Value == Double, Stored == Duration {
    /// Seconds from `minimum` up to a year, as a duration.
    static func seconds(minimum: Double = 0) -> Self {
        Self(parse: { Double($0.trimmingCharacters(in: .whitespaces)) }, check: { number in
            guard number.isFinite, number >= minimum, number <= 86_400 * 365 else { return nil }
            return .nanoseconds(Int64((number * 1e9).rounded()))
        })
    }
}

extension ConfigurationValueFormat where Value: RawRepresentable<String>, Stored == Value {
    /// One of the enumeration's raw values, in any case.
    static var choice: Self { Self(parse: { Value(rawValue: $0.lowercased()) }, check: { $0 }) }
}

extension ConfigurationValueFormat where Value == [String], Stored == [String] {
    /// A comma-separated list, each item without surrounding spaces, empty items dropped.
    static var list: Self {
        Self(parse: { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }, check: { $0 })
    }
}

extension ConfigurationValueFormat where Value == [AllowedPeer], Stored == [AllowedPeer] {
    /// Calling AE titles with their hosts (`AE@10.0.0.5, AE2@*`).
    static var peers: Self { Self(parse: { AllowedPeer.parseList($0) }, check: { $0 }) }
}
