// SigV4: the signer against test vectors AWS publishes.
//   - "Signature Version 4 test suite" (docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html):
//     get-vanilla, get-vanilla-query-order-key-case, get-header-value-trim, post-x-www-form-urlencoded;
//     credentials AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, us-east-1, service "service",
//     20150830T123600Z.
//   - Amazon S3 API reference, "Signature Calculations for the Authorization Header: Transferring Payload in a
//     Single Chunk", Example: GET Object (docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html).
import Foundation
import ObjectStorage
import Testing

@Suite struct SigV4Tests {
    let suite = SigV4Signer(
        credentials: AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1", service: "service")
    let date = "20150830T123600Z"
    let emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    func expectAuthorization(_ request: SigV4Request, signedHeaders: String, signature: String) {
        #expect(suite.authorization(request, amzDate: date) ==
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            + "SignedHeaders=\(signedHeaders), Signature=\(signature)")
    }

    @Test func getVanilla() {
        let request = SigV4Request(
            method: "GET", encodedPath: "/",
            headers: [("Host", "example.amazonaws.com"), ("X-Amz-Date", date)], payloadHash: emptyHash)
        let canonical = suite.canonicalRequest(request)
        #expect(canonical == "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\(emptyHash)")
        #expect(suite.stringToSign(canonicalRequest: canonical, amzDate: date) ==
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
            + "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")
        expectAuthorization(request, signedHeaders: "host;x-amz-date",
                            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    }

    @Test func getVanillaQueryOrderKeyCase() {
        let request = SigV4Request(
            method: "GET", encodedPath: "/", query: [("Param2", "value2"), ("Param1", "value1")],
            headers: [("Host", "example.amazonaws.com"), ("X-Amz-Date", date)], payloadHash: emptyHash)
        expectAuthorization(request, signedHeaders: "host;x-amz-date",
                            signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
    }

    @Test func getHeaderValueTrim() {
        let request = SigV4Request(
            method: "GET", encodedPath: "/",
            headers: [("Host", "example.amazonaws.com"), ("My-Header1", " value1"), ("My-Header2", "\"a   b   c\""),
                      ("X-Amz-Date", date)],
            payloadHash: emptyHash)
        expectAuthorization(request, signedHeaders: "host;my-header1;my-header2;x-amz-date",
                            signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736")
    }

    @Test func postXWWWFormURLEncoded() {
        let request = SigV4Request(
            method: "POST", encodedPath: "/",
            headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Host", "example.amazonaws.com"),
                      ("X-Amz-Date", date)],
            payloadHash: sha256Hex(Data("Param1=value1".utf8)))
        let canonical = suite.canonicalRequest(request)
        #expect(request.payloadHash == "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e")
        #expect(sha256Hex(Data(canonical.utf8)) == "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281")
        expectAuthorization(request, signedHeaders: "content-type;host;x-amz-date",
                            signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
    }

    @Test func s3GetObjectExample() {
        let signer = SigV4Signer(
            credentials: AWSCredentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE",
                                        secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            region: "us-east-1", service: "s3")
        let s3Date = "20130524T000000Z"
        let request = SigV4Request(
            method: "GET", encodedPath: "/test.txt",
            headers: [("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9"),
                      ("x-amz-content-sha256", emptyHash), ("x-amz-date", s3Date)],
            payloadHash: emptyHash)
        let canonical = signer.canonicalRequest(request)
        #expect(signer.stringToSign(canonicalRequest: canonical, amzDate: s3Date) ==
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            + "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972")
        #expect(signer.authorization(request, amzDate: s3Date) ==
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func dateAndEncoding() {
        #expect(SigV4Signer.amzDate(Date(timeIntervalSince1970: 1_440_938_160)) == "20150830T123600Z")
        #expect(SigV4Signer.uriEncode("a b/c~d=é") == "a%20b%2Fc~d%3D%C3%A9")
        #expect(SigV4Signer.uriEncode("dir/a b.dcm", keepSlash: true) == "dir/a%20b.dcm")
    }

    @Test func credentialsFromEnvironmentAndFiles() throws {
        #expect(try AWSCredentials.fromEnvironment(["AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"])
            == AWSCredentials(accessKeyID: "id", secretAccessKey: "secret"))
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("creds-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let shared = folder.appendingPathComponent("credentials")
        try """
            [default]
            aws_access_key_id = DEF
            aws_secret_access_key = defsecret

            [ci]
            aws_access_key_id=CI
            aws_secret_access_key=cisecret
            aws_session_token=tok
            """.write(to: shared, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: shared.path)  // secret files are owner-only
        #expect(try AWSCredentials.fromEnvironment(["AWS_SHARED_CREDENTIALS_FILE": shared.path]).accessKeyID == "DEF")
        #expect(try AWSCredentials.fromEnvironment(["AWS_SHARED_CREDENTIALS_FILE": shared.path, "AWS_PROFILE": "ci"])
            == AWSCredentials(accessKeyID: "CI", secretAccessKey: "cisecret", sessionToken: "tok"))
        let idFile = folder.appendingPathComponent("id"), secretFile = folder.appendingPathComponent("secret")
        try "FILEID\n".write(to: idFile, atomically: true, encoding: .utf8)
        try "filesecret\n".write(to: secretFile, atomically: true, encoding: .utf8)
        for file in [idFile, secretFile] { try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path) }
        #expect(try AWSCredentials.fromEnvironment(["AWS_ACCESS_KEY_ID_FILE": idFile.path,
                                                    "AWS_SECRET_ACCESS_KEY_FILE": secretFile.path])
            == AWSCredentials(accessKeyID: "FILEID", secretAccessKey: "filesecret"))
        #expect(throws: ObjectStoreError(.missingCredentials)) {
            try AWSCredentials.fromEnvironment(["HOME": folder.appendingPathComponent("none").path])
        }
    }
}
