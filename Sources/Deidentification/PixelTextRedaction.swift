// Burned-in text, step 1 of de-identification: a suspected image is rejected, blanked by a signature, passed,
// or read with OCR (every frame) and the words the profile's action names blanked in the pixels, which are then
// written back uncompressed. The result carries an audit of what was done: box count, boxes and categories,
// never the text read.
import DICOM
import Foundation
import OCR

/// One blanked rectangle, in the pixels of a frame (x to the right, y down), and what it held.
public struct RedactedBox: Sendable, Hashable, Codable {
    public var frame: Int
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int
    public var category: PixelTextCategory

    public init(frame: Int, x: Int, y: Int, width: Int, height: Int, category: PixelTextCategory) {
        self.frame = frame
        self.x = x
        self.y = y
        self.width = width
        self.height = height
        self.category = category
    }
}

/// What OCR of one image found and what was blanked: the per-instance audit the catalogue keeps.
public struct PixelTextAudit: Sendable, Hashable, Codable {
    public enum Outcome: String, Sendable, Hashable, Codable {
        /// Every frame was read; nothing the action names was found.
        case clean
        /// Every frame was read and the boxes were blanked.
        case redacted
        /// OCR could not read the image reliably; the profile's fallback let it pass unchanged.
        case unreadable
    }

    public var action: BurnedInTextAction
    public var outcome: Outcome
    /// Why the image could not be read (`too_small`, `low_contrast`, `no_pixel_data`, `bit_depth`), for `.unreadable`.
    public var unreadableReason: String?
    public var framesChecked: Int
    /// Words read at or above the confidence floor, in every frame and layer.
    public var wordsRead: Int
    public var boxes: [RedactedBox]
    /// The OCR engine and version, e.g. "tesseract 5.3.0".
    public var engine: String

    public init(action: BurnedInTextAction, outcome: Outcome, unreadableReason: String? = nil, framesChecked: Int, wordsRead: Int,
                boxes: [RedactedBox], engine: String) {
        self.action = action
        self.outcome = outcome
        self.unreadableReason = unreadableReason
        self.framesChecked = framesChecked
        self.wordsRead = wordsRead
        self.boxes = boxes
        self.engine = engine
    }

    /// Boxes per category (categories with none left out).
    public var categoryCounts: [PixelTextCategory: Int] {
        var out: [PixelTextCategory: Int] = [:]
        for b in boxes { out[b.category, default: 0] += 1 }
        return out
    }
}

/// What step 1 decided for one file.
struct PixelCheck {
    var blankedBySignature: String?
    /// Set when pixels were rewritten.
    var transferSyntax: String?
    /// Suspected and let through unchecked (action `pass`, or the fallback `pass` for an unreadable image).
    var suspectedPassed = false
    /// Every frame was checked (by a signature or by OCR): Clean Pixel Data is recorded, BurnedInAnnotation set to NO.
    var cleaned = false
    var audit: PixelTextAudit?
}

/// Step 1 for a profile; made once per Deidentifier (patterns compiled, engines borrowed from a shared pool).
struct BurnedInTextCheck: Sendable {
    let profile: DeidentificationProfile
    let planner: Planner
    let recognizers: TextRecognizerPool
    let patterns: PixelTextPatterns

    init(profile: DeidentificationProfile, planner: Planner, recognizers: TextRecognizerPool?) {
        self.profile = profile
        self.planner = planner
        self.recognizers = recognizers ?? TextRecognizerPool.shared(language: profile.burnedIn.ocr.language)
        patterns = PixelTextPatterns(profile.burnedIn.ocr.patterns)
    }

    var settings: PixelTextSettings { profile.burnedIn.ocr }

    func run(_ file: DicomFile) throws -> PixelCheck {
        let ds = file.dataset
        let suspected = BurnedInCheck.suspects(ds, policy: profile.burnedIn)
        let action = profile.burnedIn.effectiveAction
        if suspected, let signature = profile.signatures.first(where: { BurnedInCheck.matches($0, ds) }), ds.contains(Tags.pixelData) {
            try PixelBlanker.blank(file, regions: signature.regions)
            return PixelCheck(blankedBySignature: signature.name, transferSyntax: TransferSyntax.explicitVRLittleEndian, cleaned: true)
        }
        switch action {
        case .reject:
            if suspected { throw DeidentificationError(.burnedInAnnotation) }
            return PixelCheck()
        case .pass:
            return PixelCheck(suspectedPassed: suspected)
        case .redactSensitive, .redactAllText:
            guard suspected || (settings.allImages && ds.contains(Tags.pixelData)) else { return PixelCheck() }
            return try redact(file, action: action, suspected: suspected)
        }
    }

    /// The fallback for an image that cannot be read: rejected or passed when suspected; passed (as without OCR)
    /// when it was read only because the profile reads every image.
    private func unreadable(_ reason: String, action: BurnedInTextAction, suspected: Bool, frames: Int) throws -> PixelCheck {
        if suspected && settings.fallback == .reject { throw DeidentificationError(.burnedInTextUnreadable, detail: reason) }
        let audit = PixelTextAudit(action: action, outcome: .unreadable, unreadableReason: reason, framesChecked: frames, wordsRead: 0,
                                   boxes: [], engine: Self.engine)
        return PixelCheck(suspectedPassed: suspected, audit: audit)
    }

    static let engine = "tesseract " + TextRecognizer.version

    private func redact(_ file: DicomFile, action: BurnedInTextAction, suspected: Bool) throws -> PixelCheck {
        let ds = file.dataset
        guard ds.contains(Tags.pixelData) else { return try unreadable("no_pixel_data", action: action, suspected: suspected, frames: 0) }
        let encapsulated = ds.element(Tags.pixelData)?.isEncapsulated == true
        let px: PixelData
        do { px = try file.decodePixels() } catch { throw DeidentificationError(.pixelBlankingFailed, detail: "pixels did not decode") }
        // A compressed stream, once decoded, is written back natively (explicit VR little endian) whatever OCR finds:
        // after the decode DCMTK cannot write some syntaxes again (JPEG baseline and extended, JPEG-LS).
        guard encapsulated else { return try read(file, px, action: action, suspected: suspected) }
        do { try file.storeNativePixels(px) } catch { throw DeidentificationError(.pixelBlankingFailed, detail: "pixels could not be written back") }
        var check = try read(file, px, action: action, suspected: suspected)
        check.transferSyntax = TransferSyntax.explicitVRLittleEndian
        return check
    }

    /// OCR of every frame of the decoded pixels, and the words the action names blanked.
    private func read(_ file: DicomFile, _ px: PixelData, action: BurnedInTextAction, suspected: Bool) throws -> PixelCheck {
        let ds = file.dataset
        guard px.bitsAllocated >= 8, px.bytesPerSample * 8 == px.bitsAllocated else {
            return try unreadable("bit_depth", action: action, suspected: suspected, frames: 0)
        }
        guard min(px.rows, px.columns) >= settings.minSide else { return try unreadable("too_small", action: action, suspected: suspected, frames: 0) }
        let needles = IdentifyingText(ds, planner: planner)
        var boxes: [RedactedBox] = []
        var wordsRead = 0
        for f in 0..<px.frameCount {
            let rendered = PixelTextImage(px.frame(f))
            if rendered.storedRange == 0 { continue }  // a uniform frame holds no text
            if rendered.storedRange < settings.minContrast {
                return try unreadable("low_contrast", action: action, suspected: suspected, frames: f)
            }
            let found: [[RecognizedWord]]
            do { found = try recognizers.withRecognizer { try PixelTextReader.read(rendered, with: $0, blocks: action == .redactAllText) } } catch let e as OCRError {
                throw DeidentificationError(e.code == .engineUnavailable ? .ocrUnavailable : .pixelBlankingFailed, detail: e.reason)
            }
            let legible = Self.legible(found, minConfidence: settings.minConfidence)
            wordsRead += legible.count
            for layer in found {
                for (word, category, unreadWidth) in select(layer, action: action, needles: needles, legible: legible) {
                    // Around each word: the margin, and a fifth of its height above and below, half of it left and right
                    // (a glyph OCR dropped or clipped at either end of a word), and on a line holding an identifying value
                    // the width of the characters of it OCR did not read, left and right.
                    let b = word.box, dx = settings.margin + b.height / 2 + unreadWidth, dy = settings.margin + b.height / 5
                    let x0 = max(0, b.x - dx), y0 = max(0, b.y - dy), x1 = min(px.columns, b.maxX + dx), y1 = min(px.rows, b.maxY + dy)
                    boxes.append(RedactedBox(frame: f, x: x0, y: y0, width: x1 - x0, height: y1 - y0, category: category))
                }
            }
        }
        boxes = Self.merged(boxes)
        var audit = PixelTextAudit(action: action, outcome: .clean, framesChecked: px.frameCount, wordsRead: wordsRead, boxes: boxes,
                                   engine: Self.engine)
        guard !boxes.isEmpty else { return PixelCheck(cleaned: true, audit: audit) }
        do { try file.replacePixelData(with: PixelFill.blank(boxes, in: px)) } catch {
            throw DeidentificationError(.pixelBlankingFailed, detail: "pixels could not be written back")
        }
        audit.outcome = .redacted
        return PixelCheck(transferSyntax: TransferSyntax.explicitVRLittleEndian, cleaned: true, audit: audit)
    }

    /// The words of one layer to blank, with their category and the width (pixels) to blank beyond them on either
    /// side. Words are grouped into lines (see `lines`).
    func select(_ words: [RecognizedWord], action: BurnedInTextAction, needles: IdentifyingText, legible: Set<RecognizedWord>)
        -> [(RecognizedWord, PixelTextCategory, Int)]
    {
        var out: [(RecognizedWord, PixelTextCategory, Int)] = []
        for line in PixelTextReader.lines(words) {
            let texts = line.map(\.text)
            let identifying = needles.matches(line: texts)
            let patterned = action == .redactSensitive ? patterns.match(line: texts) : []
            // A line holding an identifying value is blanked whole: OCR often reads part of a name or a date and
            // misreads or drops its last characters, and the label beside a value ("DOB", "MRN:") is no loss. The
            // characters of the value it did not read (the surname beside the given name read, a first glyph lost on a
            // bright background) are blanked too, at the line's width per character read, on both sides.
            if let category = identifying.categories.compactMap({ $0 }).first {
                let read = texts.reduce(0) { $0 + IdentifyingText.fold($1).count }
                let width = line.last!.box.maxX - line[0].box.x
                let unreadWidth = identifying.unread > 0 && read > 0 ? (identifying.unread * width + read - 1) / read : 0
                out += line.map { ($0, category, unreadWidth) }
                continue
            }
            for (i, word) in line.enumerated() where legible.contains(word) {
                if action == .redactAllText {
                    out.append((word, .text, 0))
                } else if action == .redactSensitive && patterned[i] {
                    out.append((word, .pattern, 0))
                }
            }
        }
        return out
    }

    /// The words taken as text: with a letter or digit, and read at or above the confidence floor, or read alike
    /// (folded, within a third of their length in edits, 2+ characters) by another read of the same place (another
    /// layer or a second look). Tesseract gives a nearly right word confidence 0 now and then; what two different
    /// preparations of the pixels agree on is text, while the shapes it reads in anatomy differ from read to read.
    static func legible(_ reads: [[RecognizedWord]], minConfidence: Double) -> Set<RecognizedWord> {
        var out = Set<RecognizedWord>()
        let folded = reads.map { $0.map { IdentifyingText.fold($0.text) } }
        for (r, words) in reads.enumerated() {
            for (i, word) in words.enumerated() where !folded[r][i].isEmpty {
                if word.confidence >= minConfidence { out.insert(word); continue }
                let mine = folded[r][i]
                guard mine.count >= 2 else { continue }
                let agreed = reads.indices.contains { other in
                    other != r && reads[other].indices.contains { j in
                        let theirs = folded[other][j]
                        return theirs.count >= 2 && reads[other][j].box.intersects(word.box)
                            && IdentifyingText.distance(mine, theirs) * 3 <= max(mine.count, theirs.count)
                    }
                }
                if agreed { out.insert(word) }
            }
        }
        return out
    }

    /// Boxes of the same frame that overlap (the two layers often find the same word) merged into one, keeping the
    /// first category in PixelTextCategory order; sorted by frame, y, x.
    static func merged(_ boxes: [RedactedBox]) -> [RedactedBox] {
        var out: [RedactedBox] = []
        let order = Dictionary(uniqueKeysWithValues: PixelTextCategory.allCases.enumerated().map { ($1, $0) })
        for b in boxes.sorted(by: { ($0.frame, $0.y, $0.x) < ($1.frame, $1.y, $1.x) }) {
            var current = b
            var changed = true
            while changed {
                changed = false
                if let i = out.firstIndex(where: { $0.frame == current.frame && Self.overlap($0, current) }) {
                    let o = out.remove(at: i)
                    let x0 = min(o.x, current.x), y0 = min(o.y, current.y)
                    let x1 = max(o.x + o.width, current.x + current.width), y1 = max(o.y + o.height, current.y + current.height)
                    let category = order[o.category]! <= order[current.category]! ? o.category : current.category
                    current = RedactedBox(frame: current.frame, x: x0, y: y0, width: x1 - x0, height: y1 - y0, category: category)
                    changed = true
                }
            }
            out.append(current)
        }
        return out.sorted { ($0.frame, $0.y, $0.x) < ($1.frame, $1.y, $1.x) }
    }

    private static func overlap(_ a: RedactedBox, _ b: RedactedBox) -> Bool {
        a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height
    }
}

/// One frame rendered for OCR: 8-bit, the frame's own range stretched to 0–255 (MONOCHROME1 left as stored: both
/// polarities are read). Colour gives two images: the brightest sample of each pixel (bright text of any hue stands
/// out there) and the darkest; YBR uses its luma.
struct PixelTextImage {
    let bright: GrayImage
    let dark: GrayImage
    /// Stored values between the frame's lowest and highest (of the luma, or of any sample for colour): below a few
    /// levels, text cannot stand out of the background.
    let storedRange: Int64

    init(_ frame: Frame) {
        let values = frame.storedValues()
        let spp = frame.samplesPerPixel
        let n = frame.rows * frame.columns
        let luma = spp == 1 || frame.photometricInterpretation.hasPrefix("YBR")
        var lo = Int64.max, hi = Int64.min
        if luma {
            for i in 0..<n { let v = values[i * spp]; lo = min(lo, v); hi = max(hi, v) }
        } else {
            for v in values { lo = min(lo, v); hi = max(hi, v) }
        }
        let range = Double(max(1, hi - lo))
        var bright = [UInt8](repeating: 0, count: n), dark = [UInt8](repeating: 0, count: n)
        values.withUnsafeBufferPointer { v in
            for i in 0..<n {
                var top: Int64, bottom: Int64
                if luma {
                    top = v[i * spp]
                    bottom = top
                } else {
                    top = v[i * spp]
                    bottom = top
                    for s in 1..<spp { top = max(top, v[i * spp + s]); bottom = min(bottom, v[i * spp + s]) }
                }
                let b = UInt8(min(255, max(0, (Double(top - lo) * 255 / range).rounded())))
                bright[i] = b
                dark[i] = UInt8(min(255, max(0, (Double(bottom - lo) * 255 / range).rounded())))
            }
        }
        storedRange = n == 0 ? 0 : hi - lo
        self.bright = GrayImage(width: frame.columns, height: frame.rows, pixels: bright)
        self.dark = luma ? self.bright : GrayImage(width: frame.columns, height: frame.rows, pixels: dark)
    }
}

/// How a frame is read: two glyph layers (bright and dark strokes), sized to the image. The top-hat's side grows
/// with the image (strokes of larger text are wider), its threshold with the background's noise (automatic); the
/// layer is scaled so that its longer side is about 1024 pixels, at which Tesseract reads annotation-sized text best
/// (768 lost 3 of 198 identifying strings of the test set, mostly 12-pixel text on 512-pixel images).
enum PixelTextReader {
    /// The longer side of a layer, in pixels.
    static let targetSide = 1024.0

    static func layers(width: Int, height: Int) -> [GlyphLayerOptions] {
        let side = max(width, height)
        let kernel = min(255, max(9, side / 40) | 1)
        let scale = min(4, max(0.25, targetSide / Double(side)))
        return [GlyphLayerOptions.Polarity.bright, .dark].map {
            GlyphLayerOptions(polarity: $0, kernel: kernel, threshold: 0, gain: 3, scale: scale, border: 32)
        }
    }

    /// Lines given a second look per layer and frame, at most (the largest first).
    static let secondLooks = 24

    /// The words of each layer, then of each second look: every line a layer found that is not read with full
    /// confidence is cut out of the rendered frame (with room for a character more at either end) and read again
    /// alone, with Tesseract's own thresholding of the original grey levels. The top-hat loses glyphs where text
    /// crosses a bright bone or noisy background; the cut-out line keeps them. Each list is read on its own.
    /// With `blocks`, each layer is also read as one block of text, which finds the isolated single characters
    /// sparse reading drops ("L", "R": redact_all_text blanks them too).
    static func read(_ image: PixelTextImage, with recognizer: TextRecognizer, blocks: Bool = false) throws -> [[RecognizedWord]] {
        var out: [[RecognizedWord]] = []
        for options in layers(width: image.bright.width, height: image.bright.height) {
            let source = options.polarity == .bright ? image.bright : image.dark
            let words = try recognizer.read(source, layer: options)
            out.append(words)
            if blocks {
                var block = options
                block.block = true
                out.append(try recognizer.read(source, layer: block))
            }
            let candidates = lines(words)
                .filter { line in line.contains { $0.confidence < 90 } && line.contains { $0.box.height >= 6 } }
                .map { line in line.dropFirst().reduce(line[0].box) { union($0, $1.box) } }
                .sorted { $0.area > $1.area }
                .prefix(secondLooks)
            for box in candidates {
                let h = box.height
                let x0 = max(0, box.x - h), y0 = max(0, box.y - h / 3)
                let x1 = min(source.width, box.maxX + h), y1 = min(source.height, box.maxY + h / 3)
                guard x1 > x0, y1 > y0 else { continue }
                let region = PixelBox(x: x0, y: y0, width: x1 - x0, height: y1 - y0)
                out.append(try recognizer.readLine(source, region: region, brightText: options.polarity == .bright))
            }
        }
        return out
    }

    static func union(_ a: PixelBox, _ b: PixelBox) -> PixelBox {
        let x0 = min(a.x, b.x), y0 = min(a.y, b.y)
        return PixelBox(x: x0, y: y0, width: max(a.maxX, b.maxX) - x0, height: max(a.maxY, b.maxY) - y0)
    }

    /// Words grouped into lines by geometry, each left to right: two words share a line when their vertical extents
    /// overlap by half the smaller height and the gap between them is at most twice the taller one's height.
    /// (Tesseract's own lines split a date or a name in two now and then.)
    static func lines(_ words: [RecognizedWord]) -> [[RecognizedWord]] {
        var parent = Array(words.indices)
        func root(_ i: Int) -> Int {
            var i = i
            while parent[i] != i { parent[i] = parent[parent[i]]; i = parent[i] }
            return i
        }
        for i in words.indices {
            for j in words.indices where j > i {
                let a = words[i].box, b = words[j].box
                let overlap = min(a.maxY, b.maxY) - max(a.y, b.y)
                let gap = max(a.x, b.x) - min(a.maxX, b.maxX)
                if overlap * 2 >= min(a.height, b.height), gap <= 2 * max(a.height, b.height) { parent[root(i)] = root(j) }
            }
        }
        return Dictionary(grouping: words.indices, by: root).values
            .map { $0.map { words[$0] }.sorted { $0.box.x < $1.box.x } }
            .sorted { ($0[0].box.y, $0[0].box.x) < ($1[0].box.y, $1[0].box.x) }
    }

}

/// Blanking boxes in decoded pixels: every sample of every pixel of a box set to the value that displays as black
/// (the image's lowest stored value for MONOCHROME2 and colour index images, its highest for MONOCHROME1; 0 for
/// RGB; lowest luma and neutral chroma for YBR).
enum PixelFill {
    static func blank(_ boxes: [RedactedBox], in px: PixelData) -> PixelData {
        var bytes = px.bytes
        let spp = px.samplesPerPixel, bps = px.bytesPerSample
        let fill = fillValues(px)
        let encoded = fill.map { encode($0, px) }
        let rowStride = px.columns * spp * bps
        for b in boxes where b.frame < px.frameCount {
            let x0 = max(0, b.x), y0 = max(0, b.y), x1 = min(px.columns, b.x + b.width), y1 = min(px.rows, b.y + b.height)
            guard x0 < x1, y0 < y1 else { continue }
            for y in y0..<y1 {
                let row = b.frame * px.frameByteCount + y * rowStride
                for x in x0..<x1 {
                    for s in 0..<spp {
                        let at = row + (x * spp + s) * bps
                        for k in 0..<bps { bytes[at + k] = encoded[s][k] }
                    }
                }
            }
        }
        return px.replacingBytes(bytes)
    }

    /// The stored value written into each sample.
    static func fillValues(_ px: PixelData) -> [Int64] {
        let photometric = px.photometricInterpretation
        if photometric == "RGB" { return Array(repeating: lowest(px), count: px.samplesPerPixel) }
        if photometric.hasPrefix("YBR") && px.samplesPerPixel == 3 {
            return [lowest(px), Int64(1) << (px.bitsStored - 1), Int64(1) << (px.bitsStored - 1)]
        }
        var lo = Int64.max, hi = Int64.min
        for f in 0..<px.frameCount {
            for v in px.frame(f).storedValues() { lo = min(lo, v); hi = max(hi, v) }
        }
        return Array(repeating: photometric == "MONOCHROME1" ? hi : lo, count: px.samplesPerPixel)
    }

    /// The lowest value the stored bits can hold.
    private static func lowest(_ px: PixelData) -> Int64 { px.isSigned ? -(Int64(1) << (px.bitsStored - 1)) : 0 }

    /// A stored value as the little-endian bytes of one sample (bits placed at HighBit, two's complement when signed).
    static func encode(_ value: Int64, _ px: PixelData) -> [UInt8] {
        let shift = UInt64(max(0, px.highBit + 1 - px.bitsStored))
        let mask: UInt64 = px.bitsStored >= 64 ? .max : (1 << UInt64(px.bitsStored)) - 1
        let raw = (UInt64(bitPattern: value) & mask) << shift
        return (0..<px.bytesPerSample).map { UInt8(truncatingIfNeeded: raw >> (8 * UInt64($0))) }
    }
}
