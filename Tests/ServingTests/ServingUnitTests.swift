// Unit tests of the server's parts that need no database: tokens, QIDO parameters, Accept headers, the error
// shape, tensor stacking and native frame encoding.
@testable import DICOM
import Foundation
import HummingbirdCore
import NPY
@testable import Serving
import Testing

struct AccessTokenTests {
    @Test func aGeneratedTokenIsFoundByItsHashAndOnlyTheHashIsStored() throws {
        let (token, line) = AccessTokens.generate(role: .clinician, name: "dr-bob")
        #expect(!line.contains(token))
        #expect(line.hasPrefix("sha256:") && line.hasSuffix(" clinician dr-bob"))
        let tokens = try AccessTokens(parsing: "# comment\n\n" + line + "\n")
        #expect(tokens.principal(for: token) == Principal(name: "dr-bob", role: .clinician))
        #expect(tokens.principal(for: token + "x") == nil)
        #expect(tokens.principal(for: AccessTokens.hash(token)) == nil, "the hash itself is not a token")
        #expect(token.count == 43 && token.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
    }

    @Test func malformedLinesAreRefusedByLineNumber() {
        let hash = String(repeating: "a", count: 64)
        #expect(throws: AccessTokensError(.malformedLine, line: 2)) { try AccessTokens(parsing: "\nsha256:abc analyst x") }
        #expect(throws: AccessTokensError(.unknownRole, line: 1)) { try AccessTokens(parsing: "sha256:\(hash) admin x") }
        #expect(throws: AccessTokensError(.duplicateToken, line: 2)) {
            try AccessTokens(parsing: "sha256:\(hash) analyst a\nsha256:\(hash) clinician b")
        }
        #expect(throws: AccessTokensError(.malformedLine, line: 1)) { try AccessTokens(parsing: "\(hash) analyst a") }
    }
}

struct QIDOParsingTests {
    func parse(_ query: String, level: QueryLevel = .study) throws(ServingError) -> QIDORequest {
        try QIDORequest(query: URI("/studies?" + query).queryParameters, level: level, studyUID: nil, seriesUID: nil)
    }

    @Test func matchingKindsFollowTheAttributesVR() throws {
        let request = try parse("PatientName=DOE*&StudyDate=20200101-20201231&StudyInstanceUID=1.2.3,1.2.4&ModalitiesInStudy=CT&AccessionNumber=A1&limit=5&offset=10")
        let filters = Swift.Dictionary(uniqueKeysWithValues: request.search.filters.map { ($0.tag, $0) })
        #expect(filters["00100010"]?.match == .wildcard("DOE*") && filters["00100010"]?.isPersonName == true)
        #expect(filters["00080020"]?.match == .range(from: "20200101", to: "20201231"))
        #expect(filters["0020000D"]?.match == .anyOf(["1.2.3", "1.2.4"]))
        #expect(filters["00080061"]?.match == .exact("CT"))
        #expect(filters["00080050"]?.match == .exact("A1"))
        #expect(request.search.limit == 5 && request.search.offset == 10)
        #expect(request.search.attributes?.contains("00080020") == true)
    }

    @Test func valuesArePercentDecodedOnce() throws {
        let request = try parse("PatientName=DOE%5E*&PatientID=A%2541")
        #expect(request.search.filters.contains { $0.tag == "00100010" && $0.match == .wildcard("DOE^*") })
        #expect(request.search.filters.contains { $0.tag == "00100020" && $0.match == .exact("A%41") })
    }

    @Test func openRangesAndTagsByNumber() throws {
        let request = try parse("00080020=-20201231&00100020=X")
        #expect(request.search.filters.contains { $0.tag == "00080020" && $0.match == .range(from: nil, to: "20201231") })
        #expect(request.search.filters.contains { $0.tag == "00100020" && $0.match == .exact("X") })
    }

    @Test func includefieldAddsAttributesOrAll() throws {
        #expect(try parse("includefield=all").search.attributes == nil)
        let some = try parse("includefield=00180050,PatientAge")
        #expect(some.search.attributes?.contains("00180050") == true && some.search.attributes?.contains("00101010") == true)
    }

    @Test func badParametersAreNamed() {
        #expect(throws: ServingError.badRequest("NoSuchKeyword")) { try parse("NoSuchKeyword=1") }
        #expect(throws: ServingError.badRequest("limit")) { try parse("limit=0") }
        #expect(throws: ServingError.badRequest("StudyInstanceUID")) { try parse("StudyInstanceUID=1.2.x") }
        #expect(throws: ServingError.badRequest("StudyDate")) { try parse("StudyDate=2020-01-01-2020") }
        #expect(throws: ServingError.badRequest("includefield")) { try parse("includefield=Nonsense") }
    }
}

struct MediaTypeTests {
    @Test func rangesAreSortedByQualityWithParameters() {
        let ranges = MediaRange.parse(#"multipart/related; type="application/octet-stream"; q=0.5, multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50"#)
        #expect(ranges.map(\.partType) == ["image/jpeg", "application/octet-stream"])
        #expect(ranges[0].transferSyntax == "1.2.840.10008.1.2.4.50")
        #expect(MediaRange.parse(nil).map(\.type) == ["*/*"])
    }

    @Test func instancesAsStoredUnlessExplicitLittleEndianIsAsked() throws {
        #expect(try DICOMweb.instanceSyntax(MediaRange.parse(#"multipart/related; type="application/dicom""#)) == nil)
        #expect(try DICOMweb.instanceSyntax(MediaRange.parse(#"multipart/related; type="application/dicom"; transfer-syntax=*"#)) == nil)
        #expect(try DICOMweb.instanceSyntax(MediaRange.parse(#"multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1"#))
                == "1.2.840.10008.1.2.1")
        #expect(throws: ServingError.notAcceptable) { try DICOMweb.instanceSyntax(MediaRange.parse("image/png")) }
    }
}

struct ServingErrorTests {
    @Test func everyErrorHasOneShapeAndAGenericMessage() throws {
        for (error, status) in [(ServingError.missingToken, 401), (.unknownToken, 401), (.roleNotAllowed, 403), (.notFound, 404),
                                (.badRequest("limit"), 400), (.unavailable, 503), (.internal, 500)] {
            #expect(error.status.code == status)
            #expect(error.reason.allSatisfy { $0.isLowercase || $0 == "_" })
        }
        #expect(ServingError.badRequest("limit").message.contains("limit"))
    }
}

struct SeriesTensorTests {
    func npy(_ values: [Float], shape: [Int]) -> [UInt8] {
        var dictionary = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(shape.map(String.init).joined(separator: ", "))\(shape.count == 1 ? "," : "")), }"
        dictionary += String(repeating: " ", count: (64 - (10 + dictionary.count + 1) % 64) % 64) + "\n"
        let data = values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(dictionary.count & 0xFF), UInt8(dictionary.count >> 8)] + Array(dictionary.utf8) + data
    }

    @Test func tensorsStackAlongANewFirstAxis() throws {
        let stacked = try SeriesTensor.stack([npy([1, 2, 3, 4], shape: [2, 2]), npy([5, 6, 7, 8], shape: [2, 2])])
        let headerLength = Int(stacked[8]) | Int(stacked[9]) << 8
        #expect((10 + headerLength) % 64 == 0)
        let array = try NPYArray(decoding: stacked)
        #expect(array.shape == [2, 2, 2] && array.dtype == .float32)
        #expect(array.floats == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(throws: ServingError.unprocessable("tensor_shapes_differ")) {
            try SeriesTensor.stack([npy([1, 2, 3, 4], shape: [2, 2]), npy([1, 2, 3, 4], shape: [4])])
        }
    }
}

struct NativeFrameTests {
    func frame(_ bytes: [UInt8], rows: Int, columns: Int, samples: Int, bits: Int) -> Frame {
        let pixels = PixelData(rows: rows, columns: columns, samplesPerPixel: samples, frameCount: 1, bitsAllocated: bits, bitsStored: bits,
                               highBit: bits - 1, isSigned: false, photometricInterpretation: samples == 3 ? "RGB" : "MONOCHROME2",
                               bytesPerSample: 1, bytes: bytes)
        return pixels.frame(0)
    }

    @Test func oneBitSamplesArePackedLeastSignificantBitFirst() {
        #expect(NativeFrame.bytes(frame([1, 0, 0, 1, 1, 1, 0, 0, 1], rows: 3, columns: 3, samples: 1, bits: 1), planar: false) == [0b0011_1001, 0b1])
    }

    @Test func planarObjectsGetPlanarFrames() {
        let interleaved: [UInt8] = [1, 2, 3, 4, 5, 6]  // two RGB pixels
        #expect(NativeFrame.bytes(frame(interleaved, rows: 1, columns: 2, samples: 3, bits: 8), planar: true) == [1, 4, 2, 5, 3, 6])
        #expect(NativeFrame.bytes(frame(interleaved, rows: 1, columns: 2, samples: 3, bits: 8), planar: false) == interleaved)
    }
}
