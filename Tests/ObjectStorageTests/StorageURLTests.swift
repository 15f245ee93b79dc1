// Storage URLs and key rules.
import ObjectStorage
import Testing

@Suite struct StorageURLTests {
    @Test func fileURL() throws {
        #expect(try StorageLocation.parse("file:///var/lib/dicom-etl/objects") == .filesystem(root: "/var/lib/dicom-etl/objects"))
        #expect(throws: ObjectStoreError(.invalidStorageURL)) { try StorageLocation.parse("file://host/x") }
    }

    @Test func s3URLs() throws {
        guard case .s3(let c) = try StorageLocation.parse(
            "s3://scans/site-a/deid?endpoint=http://127.0.0.1:9000&region=eu-west-1&addressing=path") else {
            Issue.record("expected s3")
            return
        }
        #expect(c.bucket == "scans")
        #expect(c.prefix == "site-a/deid/")
        #expect(c.endpoint == "http://127.0.0.1:9000")
        #expect(c.region == "eu-west-1")
        #expect(c.addressing == .path)

        guard case .s3(let aws) = try StorageLocation.parse("s3://bucket") else {
            Issue.record("expected s3")
            return
        }
        #expect(aws.prefix == "")
        #expect(aws.endpoint == nil)
        #expect(aws.addressing == .virtualHosted)
        #expect(aws.region == "us-east-1")
        guard case .s3(let virtual) = try StorageLocation.parse("s3://b/p/?endpoint=https://minio.local&addressing=virtual") else {
            Issue.record("expected s3")
            return
        }
        #expect(virtual.addressing == .virtualHosted)
        #expect(virtual.prefix == "p/")
        for bad in ["s3:///nobucket", "s3://b?addressing=sideways", "ftp://x/y", "relative/path"] {
            #expect(throws: ObjectStoreError(.invalidStorageURL), "\(bad)") { try StorageLocation.parse(bad) }
        }
    }

    @Test func keyRules() throws {
        for good in ["a", "dicom/1.2.3/4.5.dcm", "x/.hidden", "a..b/c"] { try ObjectKey.validate(good) }
        for bad in ["", "/abs", "a//b", "a/", "../x", "a/../b", "a/./b", ".", "a\u{0}b", String(repeating: "k", count: 1025)] {
            #expect(throws: ObjectStoreError(.invalidKey), "\(bad)") { try ObjectKey.validate(bad) }
        }
        try ObjectKey.validatePrefix("")
        try ObjectKey.validatePrefix("dicom/")
        #expect(throws: ObjectStoreError(.invalidKey)) { try ObjectKey.validatePrefix("../") }
    }
}
