// Burned-in text on a generated test set (scripts/burned_in_text.py, written into a temporary folder at the start of
// the suite, nothing committed): names, IDs, dates, accession numbers, institutions and free text drawn into chest
// X-rays (PneumoniaMNIST upscaled; synthetic backgrounds without ../shared) and corpus images, 8/12/16-bit, MONOCHROME1,
// RGB and 2-frame. Judged by pixels first: a planted string counts as redacted only when every pixel of its visible
// ink lies in a blanked box whose pixels hold the fill value; and then by OCR of the output, which must not find it.
import DICOM
import Foundation
import OCR
import Testing
@testable import Deidentification

/// The generated set: written once per test process.
enum BurnedInTextSet {
    struct Planted: Decodable {
        let text: String
        let category: String
        let identifying: Bool
        let frame: Int
        let box: [Int]
        let mask: String

        /// The ink pixels, in image coordinates.
        var ink: [(x: Int, y: Int)] {
            guard let bits = Data(base64Encoded: mask) else { return [] }
            let (x0, y0, w, h) = (box[0], box[1], box[2], box[3])
            let stride = (w + 7) / 8
            var out: [(Int, Int)] = []
            for y in 0..<h {
                for x in 0..<w where bits[y * stride + x / 8] & (0x80 >> UInt8(x % 8)) != 0 { out.append((x0 + x, y0 + y)) }
            }
            return out
        }
    }

    struct Entry: Decodable {
        let path: String
        let kind: String
        let planted: [Planted]
    }

    struct Manifest: Decodable { let files: [Entry] }

    struct Generated {
        let root: String
        let files: [Entry]
        var withText: [Entry] { files.filter { !$0.planted.isEmpty } }
        var withoutText: [Entry] { files.filter { $0.kind == "no-text" } }
    }

    /// 60 images with text, 100 without; removed when the test process exits.
    static let generated: Result<Generated, any Error> = Result {
        let root = generatedRoot
        atexit { try? FileManager.default.removeItem(atPath: BurnedInTextSet.generatedRoot) }
        var arguments = [TestPaths.repo.appendingPathComponent("scripts/burned_in_text.py").path, "--out", root, "--count", "60", "--no-text", "100"]
        if let m = ProcessInfo.processInfo.environment["DICOM_ETL_MEDMNIST"], !m.isEmpty { arguments += ["--medmnist", m] }
        if let c = Corpus.root { arguments += ["--corpus", c] }
        let result = try run(TestPaths.python, arguments)
        guard result.status == 0 else { throw GenerationFailed(message: String(decoding: result.stderr, as: UTF8.self)) }
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: URL(fileURLWithPath: root + "/manifest.json")))
        return Generated(root: root, files: manifest.files)
    }

    static let generatedRoot = FileManager.default.temporaryDirectory.appendingPathComponent("burned-in-text-\(getpid())").path

    struct GenerationFailed: Error, CustomStringConvertible {
        let message: String
        var description: String { "scripts/burned_in_text.py failed: \(message)" }
    }
}

/// A profile with the given burned-in action, everything else as basic.yaml.
func burnedInProfile(_ action: BurnedInTextAction) throws -> DeidentificationProfile {
    var p = try loadProfile("basic.yaml")
    p.burnedIn.action = action
    return p
}

/// De-identifies every file of `entries` (2 threads); returns per entry its result, output and original pixels.
func deidentifyAll(_ entries: [BurnedInTextSet.Entry], root: String, _ deidentifier: Deidentifier) -> [Result<(DeidentificationResult, PixelData, PixelData), any Error>] {
    concurrentMap(entries.count) { i in
        Result { () throws -> (DeidentificationResult, PixelData, PixelData) in
            let out = try deidentified(root + "/" + entries[i].path, deidentifier)
            return (out.result, try out.original.decodePixels(), try out.output.decodePixels())
        }
    }
}

/// Whether every ink pixel of `s` lies in a blanked box of its frame and holds the fill value there (`frames`: the
/// output's stored values per frame; `fill`: PixelFill.fillValues of the output).
func inkBlanked(_ s: BurnedInTextSet.Planted, boxes: [RedactedBox], output: PixelData, frames: [[Int64]], fill: [Int64]) -> Bool {
    let frame = frames[s.frame]
    let spp = output.samplesPerPixel
    let mine = boxes.filter { $0.frame == s.frame }
    for (x, y) in s.ink {
        guard mine.contains(where: { x >= $0.x && x < $0.x + $0.width && y >= $0.y && y < $0.y + $0.height }) else { return false }
        for k in 0..<spp where frame[(y * output.columns + x) * spp + k] != fill[k] { return false }
    }
    return true
}

/// The words OCR reads in each frame of `pixels`, per layer.
func readFrames(_ pixels: PixelData) throws -> [[[RecognizedWord]]] {
    try (0..<pixels.frameCount).map { f in
        let image = PixelTextImage(pixels.frame(f))
        return try TextRecognizerPool.shared(language: "eng").withRecognizer { try PixelTextReader.read(image, with: $0) }
    }
}

/// Whether OCR of the output (`read`: readFrames of it) still reads `s` where it was planted.
func stillReadable(_ s: BurnedInTextSet.Planted, in read: [[[RecognizedWord]]]) -> Bool {
    let needle = IdentifyingText.fold(s.text)
    let needles = IdentifyingText(needles: [.init(folded: needle, category: .other, maxEdits: IdentifyingText.edits(forLength: needle.count))])
    let planted = PixelBox(x: s.box[0], y: s.box[1], width: s.box[2], height: s.box[3])
    for layer in read[s.frame] {
        let near = layer.filter { $0.box.intersects(planted) }
        for line in PixelTextReader.lines(near) {
            if needles.match(line: line.map(\.text)).contains(where: { $0 != nil }) { return true }
        }
    }
    return false
}

/// Counts of one policy over the set with text.
struct SetScore {
    var identifying = 0, identifyingRedacted = 0, identifyingReadable = 0
    var all = 0, allRedacted = 0
    var free = 0, freeKept = 0
    var misses: [String] = []
    var audits: [PixelTextAudit] = []
}

func score(_ set: BurnedInTextSet.Generated, _ action: BurnedInTextAction) throws -> (SetScore, Duration) {
    let started = ContinuousClock.now
    let results = deidentifyAll(set.withText, root: set.root, Deidentifier(profile: try burnedInProfile(action), key: testKey))
    let elapsed = ContinuousClock.now - started
    var score = SetScore()
    for (entry, result) in zip(set.withText, results) {
        let (deid, _, output) = try result.get()
        let audit = try #require(deid.pixelText, "\(entry.path): no audit")
        score.audits.append(audit)
        // OCR of the output for redact_sensitive; redact_all_text is judged by pixels alone.
        let read = action == .redactSensitive ? try readFrames(output) : []
        let frames = output.frames.map { $0.storedValues() }, fill = PixelFill.fillValues(output)
        for s in entry.planted {
            let blanked = inkBlanked(s, boxes: audit.boxes, output: output, frames: frames, fill: fill)
            score.all += 1
            let legible = action == .redactSensitive && stillReadable(s, in: read)
            if blanked && !legible { score.allRedacted += 1 }
            if s.identifying {
                score.identifying += 1
                if legible { score.identifyingReadable += 1 }
                if blanked && !legible { score.identifyingRedacted += 1 }
            } else if s.category == "free" {
                score.free += 1
                if !blanked { score.freeKept += 1 }
            }
            let counted = action == .redactAllText || s.identifying
            if counted && !(blanked && !legible) {
                score.misses.append("\(entry.path) frame \(s.frame) \(s.category) of \(s.text.count) characters at \(s.box)\(legible ? ", read by OCR" : "")\(blanked ? "" : ", ink left")")
            }
        }
    }
    return (score, elapsed)
}

func percent(_ a: Int, _ b: Int) -> String { String(format: "%.1f %%", Double(a) * 100 / Double(max(1, b))) }

@Suite(.serialized) struct BurnedInTextSetTests {
    /// redact_sensitive: ≥ 99 % of the identifying strings planted are blanked (every pixel of their ink) and no
    /// longer read by OCR; most standalone free text ("PORTABLE", "AP") is kept.
    @Test(.timeLimit(.minutes(10)))
    func redactSensitiveMakesIdentifyingTextUnreadable() throws {
        let set = try BurnedInTextSet.generated.get()
        let (s, elapsed) = try score(set, .redactSensitive)
        print("""
            redact_sensitive: \(s.identifyingRedacted) of \(s.identifying) identifying strings redacted (\(percent(s.identifyingRedacted, s.identifying))), \
            \(s.identifyingReadable) still read by OCR; \(s.freeKept) of \(s.free) standalone free-text strings kept; \(set.withText.count) images \
            (\(s.audits.reduce(0) { $0 + $1.framesChecked }) frames) in \(elapsed) on 2 threads
            """)
        for m in s.misses { print("  not redacted: \(m)") }
        #expect(s.identifying >= 150)
        #expect(Double(s.identifyingRedacted) >= 0.99 * Double(s.identifying), "redacted \(s.identifyingRedacted) of \(s.identifying)")
        #expect(s.freeKept * 2 >= s.free, "standalone free text kept: \(s.freeKept) of \(s.free)")
        #expect(s.audits.allSatisfy { $0.outcome == .redacted && $0.action == .redactSensitive })
        let categories = Set(s.audits.flatMap { $0.boxes.map(\.category) })
        #expect(categories.isSuperset(of: [.name, .id, .date, .accession, .institution]), "\(categories)")
    }

    /// redact_all_text: every string planted is blanked (every pixel of its ink).
    @Test(.timeLimit(.minutes(10)))
    func redactAllTextBlanksEveryString() throws {
        let set = try BurnedInTextSet.generated.get()
        let (s, elapsed) = try score(set, .redactAllText)
        print("redact_all_text: \(s.allRedacted) of \(s.all) planted strings redacted (\(percent(s.allRedacted, s.all))); \(set.withText.count) images in \(elapsed) on 2 threads")
        for m in s.misses { print("  not redacted: \(m)") }
        #expect(s.all >= 300)
        #expect(s.allRedacted == s.all)
    }

    /// Chest X-rays with no text: at most 1 % altered under either redact policy; every one checked (Clean Pixel Data).
    @Test(.timeLimit(.minutes(10)), arguments: [BurnedInTextAction.redactSensitive, .redactAllText])
    func imagesWithoutTextAreLeftAlone(action: BurnedInTextAction) throws {
        let set = try BurnedInTextSet.generated.get()
        let started = ContinuousClock.now
        let results = deidentifyAll(set.withoutText, root: set.root, Deidentifier(profile: try burnedInProfile(action), key: testKey))
        let elapsed = ContinuousClock.now - started
        var altered = 0, boxes = 0
        for (entry, result) in zip(set.withoutText, results) {
            let (deid, original, output) = try result.get()
            let audit = try #require(deid.pixelText, "\(entry.path)")
            #expect(deid.methodCodeValues.contains("113101"))
            if original.bytes != output.bytes { altered += 1 }
            #expect((original.bytes != output.bytes) == (audit.outcome == .redacted))
            boxes += audit.boxes.count
        }
        print("\(action.rawValue) on \(set.withoutText.count) images without text: \(altered) altered (\(percent(altered, set.withoutText.count))), \(boxes) boxes, in \(elapsed) on 2 threads")
        #expect(set.withoutText.count >= 100)
        #expect(altered * 100 <= set.withoutText.count, "altered \(altered) of \(set.withoutText.count)")
    }
}
