// StartupSecrets: what `dicom-etl run` checks before it takes a file: the pseudonymisation key, the database
// password file, the TLS files of the database URL and the S3 credential files must exist and be readable by
// their owner alone (`chmod 600`). A secret others could read stops the start with a message saying so, and
// so does a database that refuses the daemon's certificate check or login.
import Catalog
import Deidentification
import Foundation
import Logging
import ObjectStorage

extension DaemonConfiguration {
    /// Reads every secret file the daemon will use and every TLS file its URLs name, throwing the first
    /// refusal (`key_file_insecure`, `secretFileInsecure`, `SecretFileError`, …). Nothing read is kept.
    /// - Parameter environment: where the `*_FILE` variables are looked up.
    public func checkSecretFiles(environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        _ = try PseudonymKey(contentsOfFile: effectiveKeyFile, setting: keyFile.isEmpty ? "key_file (<data_dir>/pseudonym.key)" : "key_file")
        if !databaseURL.isEmpty {
            var variables = environment
            if let databasePassword { variables["DICOM_ETL_DATABASE_PASSWORD"] = databasePassword }
            _ = try DatabaseConfiguration.parse(databaseURL, environment: variables).clientConfiguration()
        }
        if !storageURL.isEmpty, case .s3(let location) = try StorageLocation.parse(storageURL) {
            // The credentials (from the environment or their files) and the CA bundle, without a request.
            let credentials = storageAccessKeyID.flatMap { id in
                storageSecretAccessKey.map { AWSCredentials(accessKeyID: id, secretAccessKey: $0) }
            }
            _ = try S3ObjectStore(configuration: location, credentials: credentials ?? AWSCredentials.fromEnvironment(environment))
        }
    }

    /// For a configured database, one connection: a refused certificate or login throws; a server that is down
    /// does not (the pipeline waits for it).
    public func checkDatabaseConnection(environment: [String: String] = ProcessInfo.processInfo.environment) async throws {
        guard !databaseURL.isEmpty else { return }
        var variables = environment
        if let databasePassword { variables["DICOM_ETL_DATABASE_PASSWORD"] = databasePassword }
        let database = try DatabaseConfiguration.parse(databaseURL, environment: variables)
        try await database.checkConnection(logger: Logger(label: "dicom-etl.startup"), ignoringTransientFailures: true)
    }
}
