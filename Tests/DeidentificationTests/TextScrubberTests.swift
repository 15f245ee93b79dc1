// Cleaning descriptor text: what is cut, and that the byte-wise path taken for ASCII text cleans exactly as the
// character-wise path every other text takes.
import Testing
import TestSupport
@testable import Deidentification

@Suite struct TextScrubberTests {
    static let identifying: Set<String> = ["Doe^John", "12345678", "St Mary Hospital", "ACC-77"]

    @Test func cutsValuesTheirWordsAndLongNumbers() {
        let scrubber = TextScrubber(identifying: Self.identifying)
        #expect(scrubber.clean("CT chest for John Doe at ST MARY hospital 20240101 id 123456") == "CT chest for at id")
        #expect(scrubber.clean("follow-up acc-77 (doe)") == "follow-up ()")
        #expect(scrubber.clean("12345678") == "")
        #expect(scrubber.clean("HEAD 12345 W/O") == "HEAD 12345 W/O")
    }

    /// Whole values are ordered and kept by their length in characters, ASCII or not: CR LF is one character.
    @Test func wholeValuesCountCharacters() {
        #expect(TextScrubber(identifying: ["AB\r\n", "XYZW", "Zoë"]).wholes == ["XYZW", "AB\r\n", "ZOË"])
        #expect(TextScrubber(identifying: ["A\r\n", "Jo"]).wholes.isEmpty)
        for text in ["", "A", "\r\n", "\r\r\n", "\n\r", "A\r\nB\rC\n", "\r\n\r\n"] {
            #expect(TextScrubber.asciiCharacterCount(text.utf8) == text.count, "\(Array(text.utf8))")
        }
    }

    @Test func nonASCIITextTakesTheCharacterPath() {
        let scrubber = TextScrubber(identifying: ["Müller^Jörg", "Doe"])
        #expect(scrubber.asciiWholes == nil)
        #expect(scrubber.clean("Thorax MÜLLER jörg") == "Thorax")
        #expect(TextScrubber(identifying: Self.identifying).clean("Thorax für DOE") == "Thorax für")
    }

    /// Random ASCII descriptors made of the values (in any case), their words, digits, punctuation and other words:
    /// the byte path's result is the character path's, text by text.
    @Test func asciiPathCleansAsTheCharacterPath() throws {
        let scrubber = TextScrubber(identifying: Self.identifying)
        let wholes = try #require(scrubber.asciiWholes)
        let pieces = ["Doe^John", "doe^john", "JOHN", "doe", "St Mary Hospital", "st mary", "HOSPITAL", "12345678", "1234567",
                      "123456", "12345", "acc-77", "ACC", "77", "CT", "chest", "w/o", "^", " ", "  ", "-", "(", ")", "\\", ".",
                      "\r\n", "\t", "x", "Johnson", "Doe1", "2024-01-01"]
        var generator = SplitMix64(seed: 0x5EED)
        for _ in 0..<2_000 {
            let count = Int(generator.next() % 9)
            let text = (0..<count).map { _ in pieces[Int(generator.next() % UInt64(pieces.count))] }.joined()
            #expect(scrubber.cleanASCII(Array(text.utf8), wholes: wholes) == scrubber.cleanUnicode(text), "\(text)")
        }
    }

    @Test func printableRunsAreTrimmedAndSplitOnBackslashAndControls() {
        let bytes = Array("  AB\\CDEF  GH".utf8) + [0] + Array("IJKLM ".utf8) + [0xC3, 0xA9] + Array("NOPQ".utf8)
        #expect(IdentifyingValues.printableRuns(bytes, minimum: 4) == ["CDEF  GH", "IJKLM", "NOPQ"])
    }
}

