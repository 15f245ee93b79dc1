// Keys, pseudonyms and date shifts: no DICOM file needed.
import Foundation
import Testing
@testable import Deidentification
import DICOM

let keyA = try! PseudonymKey(bytes: Array("0123456789abcdef0123456789abcdef".utf8))
let keyB = try! PseudonymKey(bytes: Array("fedcba9876543210fedcba9876543210".utf8))

@Suite struct PseudonymKeyTests {
    @Test func shortKeyIsRejected() {
        #expect(throws: DeidentificationError(.keyTooShort, detail: "at least 32 bytes are required")) {
            try PseudonymKey(bytes: Array(repeating: 1, count: 31))
        }
    }

    @Test func keyFromEnvironment() throws {
        #expect(throws: DeidentificationError.self) { try PseudonymKey.fromEnvironment([:]) }
        do {
            _ = try PseudonymKey.fromEnvironment([:])
        } catch let e as DeidentificationError {
            #expect(e.code == .keyMissing)
        }
        let k = try PseudonymKey.fromEnvironment(["DICOM_ETL_KEY": "0123456789abcdef0123456789abcdef"])
        #expect(k.fingerprint == keyA.fingerprint)
        #expect(k.fingerprint != keyB.fingerprint)
    }

    @Test func keyFromFileIgnoresOneTrailingNewline() throws {
        let path = NSTemporaryDirectory() + "deid-key-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("0123456789abcdef0123456789abcdef\n".utf8).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)  // a key must be owner-only
        let k = try PseudonymKey.fromEnvironment(["DICOM_ETL_KEY_FILE": path, "DICOM_ETL_KEY": "ignored-because-the-file-wins-0000000"])
        #expect(k.fingerprint == keyA.fingerprint)
        try Data("short\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: DeidentificationError(.keyTooShort, detail: "at least 32 bytes are required")) { try PseudonymKey(contentsOfFile: path) }
        #expect { try PseudonymKey(contentsOfFile: path + ".absent") } throws: { ($0 as? DeidentificationError)?.code == .keyUnreadable }
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        #expect { try PseudonymKey(contentsOfFile: path) } throws: { ($0 as? DeidentificationError)?.code == .keyFileInsecure }
    }
}

@Suite struct PseudonymizerTests {
    let a = Pseudonymizer(key: keyA)
    let b = Pseudonymizer(key: keyB)

    @Test func uidIs225OfTheFirst128BitsOfTheHMAC() throws {
        let uid = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
        let p = a.uid(uid)
        #expect(p.hasPrefix("2.25."))
        #expect(p.count <= 64)
        // Independent reference: Python's hmac module.
        let script = "import hmac,hashlib,sys; print('2.25.' + str(int.from_bytes(hmac.new(sys.argv[1].encode(), ('uid:' + sys.argv[2]).encode(), hashlib.sha256).digest()[:16], 'big')))"
        let r = try run(TestPaths.python, ["-c", script, "0123456789abcdef0123456789abcdef", uid])
        #expect(String(decoding: r.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == p)
        #expect(a.uid(uid + "\0") == p)  // padding ignored
        #expect(a.uid(uid) == p)
        #expect(b.uid(uid) != p)
        #expect(a.uid(uid + "1") != p)
    }

    @Test func wellKnownUIDsAreKept() {
        #expect(a.uid("1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2")
        #expect(a.uid("1.2.840.10008.1.2.1") == "1.2.840.10008.1.2.1")
    }

    @Test func decimalOf128Bits() {
        #expect(Pseudonymizer.decimal(hi: 0, lo: 12345) == "12345")
        #expect(Pseudonymizer.decimal(hi: 1, lo: 0) == "18446744073709551616")
        #expect(Pseudonymizer.decimal(hi: .max, lo: .max) == "340282366920938463463374607431768211455")
        #expect(Pseudonymizer.decimal(hi: 1 << 63, lo: 0) == "170141183460469231731687303715884105728")
        #expect(Pseudonymizer.decimal(hi: 54210108624275221, lo: 12919594847110692864) == "1000000000000000000000000000000000000")
    }

    @Test func identifiersAreStableAndFitTheirVR() {
        let pid = a.patientID("12345678")
        #expect(pid == a.patientID("12345678"))
        #expect(pid != b.patientID("12345678"))
        #expect(pid.count == 20 && pid.hasPrefix("P"))
        let acc = a.accessionNumber("ACC001")
        #expect(acc.count == 16 && acc.hasPrefix("A"))  // SH: 16 characters at most
        #expect(acc != a.accessionNumber("ACC002"))
        #expect(a.patientName(forPseudonymousID: pid) == "ANON^" + pid)
        // Domains are separate: the same text gives unrelated pseudonyms per kind.
        #expect(a.patientID("X").dropFirst().prefix(15) != a.accessionNumber("X").dropFirst())
    }

    @Test func dateShiftIsInRangeAndPerPatient() {
        var seen = Set<Int>()
        for i in 0..<200 {
            let d = a.dateShiftDays(patientKey: "patient-\(i)", range: -100 ... -10)
            #expect((-100 ... -10).contains(d))
            #expect(d == a.dateShiftDays(patientKey: "patient-\(i)", range: -100 ... -10))
            seen.insert(d)
        }
        #expect(seen.count > 50)
        let differing = (0..<50).filter { a.dateShiftDays(patientKey: "p\($0)", range: -3650 ... -365) != b.dateShiftDays(patientKey: "p\($0)", range: -3650 ... -365) }
        #expect(differing.count > 40)
    }
}

@Suite struct DateShiftTests {
    @Test func daShiftKeepsIntervalsAcrossMonthsYearsAndLeapDays() {
        let s = DateShift(days: -30)
        #expect(s.shiftDA("20200315") == "20200214")
        #expect(s.shiftDA("20200101") == "20191202")
        #expect(DateShift(days: 1).shiftDA("20200228") == "20200229")
        #expect(DateShift(days: 1).shiftDA("20210228") == "20210301")
        #expect(DateShift(days: -366).shiftDA("20000229") == "19990228")
        #expect(s.shiftDA("20200315\\20200401") == "20200214\\20200302")
        #expect(s.shiftDA("20200315-20200401") == "20200214-20200302")
        #expect(s.shiftDA("-20200401") == "-20200302")
        #expect(s.shiftDA("2020.03.15") == "20200214")
        #expect(s.shiftDA("") == "")
        #expect(s.shiftDA("2020") == nil)
        #expect(s.shiftDA("20201340") == nil)
        #expect(s.shiftDA("not a date") == nil)
    }

    @Test func dtShiftMovesTheDateOnly() {
        let s = DateShift(days: -30)
        #expect(s.shiftDT("20200315101530.123456+0100") == "20200214101530.123456+0100")
        #expect(s.shiftDT("20200315") == "20200214")
        #expect(s.shiftDT("202003") == "202001")  // its first day, 2020-03-01, moves to 2020-01-31
        #expect(s.shiftDT("2020") == "2019")
        #expect(s.shiftDT("20") == nil)
    }

    @Test func dayCountsRoundTrip() {
        for z in stride(from: -800_000, to: 800_000, by: 997) {
            let (y, m, d) = DateShift.civil(fromDays: z)
            #expect(DateShift.days(fromCivil: y, m, d) == z)
        }
        #expect(DateShift.days(fromCivil: 1970, 1, 1) == 0)
        #expect(DateShift.days(fromCivil: 2000, 3, 1) == 11017)
    }
}

@Suite struct RawSearchTests {
    /// The raw-bytes search finds values anywhere in bytes (ignoring ASCII case), and only those.
    @Test func findsNeedlesInBytes() {
        var bytes = [UInt8](repeating: 0, count: 10_000)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 7) }
        let planted = Array("doe^jonathan".utf8)
        bytes.replaceSubrange(5000..<(5000 + planted.count), with: planted)
        let found = PHIVerifier.searchRaw(bytes, [("DOE^JONATHAN", DICOM.Tag(0x0010, 0x0010)), ("NOT-THERE-123", DICOM.Tag(0x0010, 0x0020))])
        #expect(found.map(\.0) == ["DOE^JONATHAN"])
    }
}
