// Secret files: the owner-and-mode rule, real files with each mode, and every reader of a secret (the
// pseudonymisation key, the database password file, the S3 credential files, a TLS client key) refusing a
// file others could read, with a message that says `chmod 600` and never holds the secret.
#if canImport(Glibc)
import Glibc
#endif
import Catalog
import Deidentification
import Foundation
import ObjectStorage
import Secrets
import Testing

@Suite struct SecretFileRuleTests {
    /// (owner, mode, running user) → refused with this code, or accepted (nil).
    static let cases: [(UInt32, UInt32, UInt32, SecretFileError.Code?)] = [
        (1000, 0o600, 1000, nil), (1000, 0o400, 1000, nil),
        (1000, 0o640, 1000, .groupOrOthersAccess), (1000, 0o644, 1000, .groupOrOthersAccess),
        (1000, 0o604, 1000, .groupOrOthersAccess), (1000, 0o660, 1000, .groupOrOthersAccess),
        (1000, 0o610, 1000, .groupOrOthersAccess), (1000, 0o601, 1000, .groupOrOthersAccess),
        (2000, 0o600, 1000, .wrongOwner), (2000, 0o400, 1000, .wrongOwner),
        // Owned by root, read by a service user through the group (a Kubernetes Secret volume with fsGroup).
        (0, 0o440, 10001, nil), (0, 0o640, 10001, nil), (0, 0o400, 10001, nil),
        (0, 0o444, 10001, .groupOrOthersAccess), (0, 0o460, 10001, .groupOrOthersAccess),
        (0, 0o450, 10001, .groupOrOthersAccess),
        // Running as root: only root's own files, owner-only.
        (0, 0o600, 0, nil), (0, 0o640, 0, .groupOrOthersAccess), (1000, 0o600, 0, .wrongOwner),
    ]

    @Test func ownerAndModeRule() {
        for (owner, mode, user, expected) in Self.cases {
            #expect(SecretFile.problem(owner: owner, mode: mode, runningUser: user) == expected,
                    "owner \(owner) mode \(String(mode, radix: 8)) user \(user)")
        }
    }

    @Test func realFilesByMode() throws {
        let folder = try ScratchFolder("dicom-etl-secret")
        defer { folder.remove() }
        let secret = "s3cr3t-" + UUID().uuidString
        let file = try folder.write("secret", secret + "\n")
        #expect(try SecretFile.readText(file, setting: "TEST_FILE") == secret)
        for mode: mode_t in [0o644, 0o640, 0o604, 0o620, 0o660] {
            chmod(file, mode)
            do {
                _ = try SecretFile.read(file, setting: "TEST_FILE")
                Issue.record("mode \(String(mode, radix: 8)) was accepted")
            } catch {
                #expect(error.code == .groupOrOthersAccess)
                #expect(error.description.contains("chmod 600 \(file)"))
                #expect(error.description.contains("TEST_FILE"))
                #expect(!error.description.contains(secret))
            }
        }
        chmod(file, 0o400)
        #expect(try SecretFile.readText(file, setting: "TEST_FILE") == secret)
        #expect(throws: SecretFileError.self) { try SecretFile.read(folder.path + "/absent", setting: "TEST_FILE") }
        #expect(throws: SecretFileError.self) { try SecretFile.read(folder.path, setting: "TEST_FILE") }  // a folder
    }

    @Test(.enabled(if: geteuid() == 0, "chown needs root")) func aFileOfAnotherUserIsRefused() throws {
        let folder = try ScratchFolder("dicom-etl-secret")
        defer { folder.remove() }
        let file = try folder.write("secret", "another user's secret")
        #expect(chown(file, 65534, 65534) == 0)
        do {
            _ = try SecretFile.read(file, setting: "TEST_FILE")
            Issue.record("a file of uid 65534 was accepted by root")
        } catch {
            #expect(error.code == .wrongOwner)
            #expect(error.description.contains("chmod 600"))
            #expect(!error.description.contains("another user's secret"))
        }
    }
}

@Suite struct SecretReadersTests {
    /// A folder with one secret file of the given mode; the secret text is random.
    static func withSecret(mode: mode_t, _ body: (String, String) throws -> Void) throws {
        let folder = try ScratchFolder("dicom-etl-secret")
        defer { folder.remove() }
        let secret = "secret-" + UUID().uuidString + UUID().uuidString
        try body(try folder.write("secret", secret + "\n", mode: mode), secret)
    }

    @Test func pseudonymisationKey() throws {
        try Self.withSecret(mode: 0o600) { file, _ throws in
            #expect(try PseudonymKey(contentsOfFile: file).fingerprint.count == 16)
        }
        try Self.withSecret(mode: 0o644) { file, secret in
            do {
                _ = try PseudonymKey.fromEnvironment([PseudonymKey.fileVariable: file])
                Issue.record("a key file with mode 0644 was accepted")
            } catch let error as DeidentificationError {
                #expect(error.code == .keyFileInsecure)
                #expect(error.description.contains("chmod 600 \(file)"))
                #expect(error.description.contains("DICOM_ETL_KEY_FILE"))
                #expect(!error.description.contains(secret))
            }
        }
        // Printing a key prints its fingerprint, never its bytes.
        let key = try PseudonymKey(bytes: Array("printing this key must not show it 0123456789".utf8))
        #expect(!"\(key)".contains("printing this key"))
        #expect(!String(reflecting: key).contains("printing this key"))
    }

    @Test func databasePasswordFile() throws {
        let url = "postgres://etl@db.example.org/etl?sslmode=verify-full"
        try Self.withSecret(mode: 0o600) { file, secret throws in
            #expect(try DatabaseConfiguration.parse(url, environment: ["DICOM_ETL_DATABASE_PASSWORD_FILE": file]).password == secret)
        }
        for mode: mode_t in [0o640, 0o644] {
            try Self.withSecret(mode: mode) { file, secret in
                for (parsed, setting) in [(url, ["DICOM_ETL_DATABASE_PASSWORD_FILE": file]), (url + "&password_file=" + file, [:])] {
                    do {
                        _ = try DatabaseConfiguration.parse(parsed, environment: setting)
                        Issue.record("a password file with mode \(String(mode, radix: 8)) was accepted")
                    } catch let error as CatalogError {
                        #expect(error.code == .secretFileInsecure)
                        #expect(error.description.contains("chmod 600"))
                        #expect(!error.description.contains(secret))
                    }
                }
            }
        }
        // Printing a configuration prints the redacted URL.
        let configuration = try DatabaseConfiguration.parse("postgres://etl:hunter2-password@db/etl", environment: [:])
        #expect(!"\(configuration)".contains("hunter2"))
        #expect(!String(reflecting: configuration).contains("hunter2"))
    }

    @Test func s3CredentialFiles() throws {
        let folder = try ScratchFolder("dicom-etl-secret")
        defer { folder.remove() }
        let secret = "aws-secret-" + UUID().uuidString
        let id = try folder.write("id", "AKIDEXAMPLE\n")
        let secretFile = try folder.write("secret", secret + "\n")
        let environment = ["AWS_ACCESS_KEY_ID_FILE": id, "AWS_SECRET_ACCESS_KEY_FILE": secretFile]
        #expect(try AWSCredentials.fromEnvironment(environment).secretAccessKey == secret)
        chmod(secretFile, 0o644)
        do {
            _ = try AWSCredentials.fromEnvironment(environment)
            Issue.record("an S3 secret file with mode 0644 was accepted")
        } catch let error as SecretFileError {
            #expect(error.code == .groupOrOthersAccess)
            #expect(error.setting == "AWS_SECRET_ACCESS_KEY_FILE")
            #expect(error.description.contains("chmod 600"))
            #expect(!error.description.contains(secret))
        }
        // A shared credentials file is a secret file too.
        let shared = try folder.write("credentials", "[default]\naws_access_key_id = A\naws_secret_access_key = \(secret)\n", mode: 0o604)
        #expect(throws: SecretFileError.self) { try AWSCredentials.fromEnvironment(["AWS_SHARED_CREDENTIALS_FILE": shared]) }
        chmod(shared, 0o600)
        #expect(try AWSCredentials.fromEnvironment(["AWS_SHARED_CREDENTIALS_FILE": shared]).secretAccessKey == secret)
        // Printing credentials never prints the secret.
        let credentials = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: secret)
        #expect(!"\(credentials)".contains(secret))
        #expect(!String(reflecting: credentials).contains(secret))
    }

    @Test func tlsClientKey() throws {
        let folder = try ScratchFolder("dicom-etl-secret")
        defer { folder.remove() }
        let pki = try ThrowawayPKI(folder: folder.path)
        let url = "postgres://tls_client@localhost/etl?sslmode=verify-full&sslrootcert=\(pki.caCertificate)"
            + "&sslcert=\(pki.clientCertificate)&sslkey=\(pki.clientKey)"
        _ = try DatabaseConfiguration.parse(url, environment: [:]).clientConfiguration()
        chmod(pki.clientKey, 0o640)
        do {
            _ = try DatabaseConfiguration.parse(url, environment: [:]).clientConfiguration()
            Issue.record("a client key with mode 0640 was accepted")
        } catch let error as CatalogError {
            #expect(error.code == .secretFileInsecure)
            #expect(error.description.contains("sslkey"))
            #expect(error.description.contains("chmod 600"))
        }
        // A certificate without its key is a mistake in the URL.
        #expect(throws: CatalogError(.invalidDatabaseURL)) {
            try DatabaseConfiguration.parse("postgres://u@h/db?sslcert=\(pki.clientCertificate)", environment: [:])
        }
    }
}
