// Tesseract behind the tess_ facade: one engine per thread (an engine is not re-entrant), created lazily and
// kept for the life of the process, because loading the language model costs far more than reading an image.
import CTesseract
import Foundation

/// A recognised word: its text, its box in the image's pixels, Tesseract's confidence (0–100) and the line it
/// belongs to (numbered per recognition call).
public struct RecognizedWord: Sendable, Hashable {
    public var text: String
    public var box: PixelBox
    public var confidence: Double
    public var line: Int

    public init(text: String, box: PixelBox, confidence: Double, line: Int) {
        self.text = text
        self.box = box
        self.confidence = confidence
        self.line = line
    }
}

/// How a glyph layer is made from a grey image (see tess_layer_options): a top-hat of side `kernel` keeps the
/// strokes narrower than it that stand out brighter (`.bright`) or darker (`.dark`) than their surroundings by at
/// least `threshold` grey levels (0: twice the 90th percentile of the top-hat, within 40–100, so that the
/// threshold rises over a noisy background); they are drawn dark on white, amplified by `gain`, scaled by `scale` and framed
/// by `border` white pixels, which is the form Tesseract reads best.
public struct GlyphLayerOptions: Sendable, Hashable {
    public enum Polarity: Sendable, Hashable { case bright, dark }
    public var polarity: Polarity
    public var kernel: Int
    public var threshold: Int
    public var gain: Int
    public var scale: Double
    public var border: Int
    /// Read the layer as one block of text (Tesseract's mode 6) rather than as sparse text (mode 11): slower on
    /// scattered text, but keeps the isolated single characters ("L", "R") sparse mode drops as noise.
    public var block: Bool

    public init(polarity: Polarity, kernel: Int = 9, threshold: Int = 40, gain: Int = 3, scale: Double = 1, border: Int = 32, block: Bool = false) {
        self.polarity = polarity
        self.kernel = kernel
        self.threshold = threshold
        self.gain = gain
        self.scale = scale
        self.border = border
        self.block = block
    }

    var c: tess_layer_options {
        tess_layer_options(polarity: polarity == .bright ? 0 : 1, kernel: Int32(clamping: kernel), threshold: Int32(clamping: threshold),
                           gain: Int32(clamping: gain), scale: Float(scale), border: Int32(clamping: border), block: block ? 1 : 0)
    }
}

/// One Tesseract engine with its language model loaded. Not for concurrent use; see `TextRecognizerPool`.
public final class TextRecognizer {
    private let handle: OpaquePointer

    /// Loads `language` from `dataPath` (nil: TESSDATA_PREFIX or the library's default folder).
    /// - Throws: `OCRError` `.engineUnavailable` when the language data cannot be loaded.
    public init(language: String = "eng", dataPath: String? = nil) throws {
        var status = TESS_OK
        guard let handle = tess_engine_create(dataPath, language, &status) else {
            throw OCRError(status == TESS_OUT_OF_MEMORY ? .outOfMemory : .engineUnavailable)
        }
        self.handle = handle
    }

    deinit { tess_engine_destroy(handle) }

    /// The Tesseract version, e.g. "5.3.0".
    public static var version: String { String(cString: tess_library_version()) }

    /// The words of `image`'s glyph layer; boxes in `image`'s pixels.
    public func read(_ image: GrayImage, layer options: GlyphLayerOptions) throws -> [RecognizedWord] {
        var layer = options.c
        return try collect { words, count in
            image.pixels.withUnsafeBufferPointer {
                tess_engine_read_layer(handle, $0.baseAddress, Int32(image.width), Int32(image.height), Int32(image.width), &layer, &words, &count)
            }
        }
    }

    /// The words of one text line in `region` of `image`: cut out, inverted when `brightText`, scaled to
    /// `targetHeight` pixels high and read as a single line with Tesseract's own thresholding; boxes in `image`'s pixels.
    public func readLine(_ image: GrayImage, region: PixelBox, brightText: Bool, targetHeight: Int = 48) throws -> [RecognizedWord] {
        try collect { words, count in
            image.pixels.withUnsafeBufferPointer {
                tess_engine_read_region(handle, $0.baseAddress, Int32(image.width), Int32(image.height), Int32(image.width),
                                        Int32(region.x), Int32(region.y), Int32(region.width), Int32(region.height), brightText ? 1 : 0,
                                        Int32(targetHeight), &words, &count)
            }
        }
    }

    /// The words of `image` as given (dark text on a light background reads best).
    public func read(_ image: GrayImage) throws -> [RecognizedWord] {
        try collect { words, count in
            image.pixels.withUnsafeBufferPointer {
                tess_engine_read(handle, $0.baseAddress, Int32(image.width), Int32(image.height), Int32(image.width), &words, &count)
            }
        }
    }

    /// The glyph layer itself, as the engine sees it (for inspection and tests).
    public static func glyphLayer(_ image: GrayImage, options: GlyphLayerOptions) throws -> GrayImage {
        var layer = options.c
        var out: UnsafeMutablePointer<UInt8>?
        var width: Int32 = 0, height: Int32 = 0
        let status = image.pixels.withUnsafeBufferPointer {
            tess_glyph_layer($0.baseAddress, Int32(image.width), Int32(image.height), Int32(image.width), &layer, &out, &width, &height)
        }
        try check(status)
        defer { tess_free(out) }
        let count = Int(width) * Int(height)
        return GrayImage(width: Int(width), height: Int(height), pixels: [UInt8](UnsafeBufferPointer(start: out, count: count)))
    }

    private func collect(_ body: (inout UnsafeMutablePointer<tess_word>?, inout Int) -> tess_status) throws -> [RecognizedWord] {
        var words: UnsafeMutablePointer<tess_word>?
        var count = 0
        try Self.check(body(&words, &count))
        defer { tess_words_free(words, count) }
        var out: [RecognizedWord] = []
        out.reserveCapacity(count)
        for i in 0..<count {
            guard let w = words?[i], let text = w.text else { continue }
            out.append(RecognizedWord(
                text: String(cString: text), box: PixelBox(x: Int(w.left), y: Int(w.top), width: Int(w.width), height: Int(w.height)),
                confidence: Double(w.confidence), line: Int(w.line)))
        }
        return out
    }

    private static func check(_ status: tess_status) throws {
        switch status {
        case TESS_OK: return
        case TESS_INVALID_ARGUMENT: throw OCRError(.invalidArgument)
        case TESS_OUT_OF_MEMORY: throw OCRError(.outOfMemory)
        case TESS_INIT_FAILED: throw OCRError(.engineUnavailable)
        default: throw OCRError(.recognitionFailed)
        }
    }
}

/// Engines shared by every thread of a process: a thread borrows an idle engine or, when none is idle, the pool
/// loads a new one; engines are kept until the process ends. A single-threaded process (a sandbox child) thus
/// loads exactly one engine, on its first image.
public final class TextRecognizerPool: @unchecked Sendable {
    private static let registryLock = NSLock()
    nonisolated(unsafe) private static var registry: [String: TextRecognizerPool] = [:]  // guarded by registryLock

    /// The process's pool for `language` (created on first use; engines load when first borrowed).
    public static func shared(language: String) -> TextRecognizerPool {
        registryLock.withLock {
            if let pool = registry[language] { return pool }
            let pool = TextRecognizerPool(language: language)
            registry[language] = pool
            return pool
        }
    }

    public let language: String
    public let dataPath: String?
    private let lock = NSLock()
    private var idle: [TextRecognizer] = []
    private var created = 0

    public init(language: String, dataPath: String? = nil) {
        self.language = language
        self.dataPath = dataPath
    }

    /// How many engines this pool has loaded so far.
    public var enginesLoaded: Int {
        lock.withLock { created }
    }

    /// Runs `body` with an engine no other thread uses meanwhile.
    /// - Throws: `OCRError.engineUnavailable` when a new engine is needed and cannot be loaded; whatever `body` throws.
    public func withRecognizer<T>(_ body: (TextRecognizer) throws -> T) throws -> T {
        let engine = try borrow()
        defer { giveBack(engine) }
        return try body(engine)
    }

    private func borrow() throws -> TextRecognizer {
        if let engine = lock.withLock({ idle.popLast() }) { return engine }
        let engine = try TextRecognizer(language: language, dataPath: dataPath)  // slow: outside the lock
        lock.withLock { created += 1 }
        return engine
    }

    private func giveBack(_ engine: TextRecognizer) {
        lock.withLock { idle.append(engine) }
    }
}
