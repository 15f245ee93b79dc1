// TLS to S3: moto served over HTTPS with a server certificate for `localhost` from a throwaway CA, reached
// through storage URLs as an operator writes them. The private CA bundle (`ca_bundle=`) works; broken copies
// (another CA, the system's roots, the wrong host name) are refused at once with `tls_handshake_failed`.
import Foundation
import ObjectStorage
import Testing

@Suite(.serialized, .enabled(if: TLSMoto.available && ThrowawayPKI.openssl != nil, "moto (the test venv) and openssl are needed"))
struct S3TLSTests {
    /// moto checks no signature here: any credentials do (signatures are tested against the plain-text server).
    static let credentials = AWSCredentials(accessKeyID: "tls-test", secretAccessKey: "tls-test-secret")

    static func store(_ url: String) throws -> any ObjectStore {
        try StorageLocation.parse(url).makeStore(credentials: credentials)
    }

    @Test func privateCABundleOverHTTPS() async throws {
        let folder = try ScratchFolder("dicom-etl-s3tls")
        defer { folder.remove() }
        let pki = try ThrowawayPKI(folder: folder.path)
        let moto = try TLSMoto(pki: pki, log: folder.path + "/moto.log")
        defer { moto.stop() }
        let bucket = "tls-" + UUID().uuidString.prefix(8).lowercased()
        func url(host: String = "localhost", _ options: String) -> String {
            "s3://\(bucket)/objects?endpoint=https://\(host):\(moto.port)&region=us-east-1\(options)"
        }

        // The right CA: the bucket is made, an object goes in and comes back.
        let good = try Self.store(url("&ca_bundle=\(pki.caCertificate)"))
        try await (good as? S3ObjectStore)?.createBucket()
        let body = Data("tensor bytes over TLS".utf8)
        _ = try await good.put("a/b.npy", data: body, contentType: "application/x-npy", sha256: nil)
        #expect(try await good.get("a/b.npy") == body)

        // Broken copies, each refused by the handshake (not retried as an outage).
        let started = ContinuousClock.now
        for (name, broken) in [("another CA", url("&ca_bundle=\(pki.otherCACertificate)")),
                               ("the system's roots", url("")),
                               ("the wrong host name", url(host: "127.0.0.1", "&ca_bundle=\(pki.caCertificate)"))] {
            do {
                _ = try await Self.store(broken).get("a/b.npy")
                Issue.record("\(name): the object was read")
            } catch let error as ObjectStoreError {
                #expect(error.code == .tlsHandshakeFailed, "\(name): \(error)")
            } catch {
                Issue.record("\(name): \(String(reflecting: error))")
            }
        }
        #expect(ContinuousClock.now - started < .seconds(30), "refusals are not retried")
    }

    @Test func caBundleMistakesAreRefusedAtOnce() throws {
        let folder = try ScratchFolder("dicom-etl-s3tls")
        defer { folder.remove() }
        let notPEM = try folder.write("not-a-ca.pem", "not a certificate", mode: 0o644)
        for url in ["s3://b/p?endpoint=https://localhost:9&ca_bundle=\(folder.path)/absent.pem",
                    "s3://b/p?endpoint=https://localhost:9&ca_bundle=\(notPEM)",
                    // A CA bundle for a plain-text endpoint: TLS was wanted and would not happen.
                    "s3://b/p?endpoint=http://localhost:9&ca_bundle=\(notPEM)"] {
            #expect(throws: ObjectStoreError(.invalidCABundle), "\(url)") { try Self.store(url) }
        }
    }
}
