// Recipe: what a model's input contract asks for, loaded from etl/normalize/*.yaml, with a stable
// content hash so a tensor's sidecar records exactly which recipe produced it.
import Crypto
import Foundation
import Yams

/// A normalisation recipe: the steps and parameters that turn stored pixels into a model's input tensor.
public struct Recipe: Sendable, Equatable {
    /// How a frame is made square before resizing.
    public enum Crop: String, Sendable, Codable, CaseIterable {
        /// Keep the centred square of side min(rows, columns).
        case centreSquare = "centre-square"
        /// Pad the short side with black (0 in display space) to a centred square.
        case padSquare = "pad-square"
        /// Keep the whole frame.
        case none
    }

    /// The resampling filter.
    public enum Resize: String, Sendable, Codable, CaseIterable {
        /// Exact box filter with fractional coverage (antialiased area averaging).
        case area
    }

    /// What the frames of one file (or the files of one series) become.
    public enum FrameMode: String, Sendable, Codable, CaseIterable {
        /// One 2D tensor per frame.
        case separate
        /// One F×H×W (or F×H×W×3) tensor of every frame, in frame order.
        case stack
        /// One D×H×W volume sorted along the slice normal.
        case volume
    }

    /// Where the VOI window comes from.
    public enum WindowSource: String, Sendable, Codable, CaseIterable {
        /// The file's VOI LUT Sequence or WindowCenter/WindowWidth (value `index`).
        case fromDicom = "from-dicom"
        /// The recipe's `center`/`width`.
        case fixed
        /// Minimum to maximum of the image after the modality LUT: stretches every image differently.
        case fullRange = "full-range"
        /// The stored bit range (0…2^BitsStored − 1, or −2^(BitsStored−1)…2^(BitsStored−1) − 1 when signed)
        /// through the modality LUT, mapped linearly to [0, 1]: keeps the stored meaning of a value, whatever
        /// the image holds (identity over 255 for 8-bit data). A Modality LUT Sequence maps to 0…2^bits − 1
        /// of its descriptor.
        case bitRange = "bit-range"
    }

    /// The VOI LUT function used with a window.
    public enum VOIFunctionChoice: String, Sendable, Codable, CaseIterable {
        /// The file's VOILUTFunction (LINEAR when absent); for a fixed window, LINEAR_EXACT.
        case fromDicom = "from-dicom"
        case linear
        case linearExact = "linear-exact"
        case sigmoid
    }

    /// The window step of a recipe.
    public struct Window: Sendable, Equatable, Codable {
        public var source: WindowSource
        /// Which of several WindowCenter/WindowWidth values (or VOI LUT Sequence items) to use.
        public var index: Int
        public var center: Double?
        public var width: Double?
        /// What to do when the file has no usable window (`from-dicom` only): `bit-range`, `full-range` or `fixed`.
        public var fallback: WindowSource?

        public init(source: WindowSource, index: Int = 0, center: Double? = nil, width: Double? = nil,
                    fallback: WindowSource? = .fullRange) {
            self.source = source
            self.index = index
            self.center = center
            self.width = width
            self.fallback = fallback
        }

        enum CodingKeys: String, CodingKey { case source, index, center, width, fallback }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            source = try c.decode(WindowSource.self, forKey: .source)
            index = try c.decodeIfPresent(Int.self, forKey: .index) ?? 0
            center = try c.decodeIfPresent(Double.self, forKey: .center)
            width = try c.decodeIfPresent(Double.self, forKey: .width)
            fallback = try c.decodeIfPresent(WindowSource.self, forKey: .fallback)
        }
    }

    /// Output colour.
    public enum Colour: String, Sendable, Codable, CaseIterable {
        /// One channel; colour images become ITU-R BT.601 luma.
        case grayscale
        /// Three channels (H×W×3); grey images are replicated.
        case rgb
    }

    /// Intensity mapping applied after geometry.
    public enum IntensityMode: String, Sendable, Codable, CaseIterable {
        /// Display values in [0, 1] as they are.
        case unit
        /// Per tensor: (x − mean) / std.
        case zscore
        /// (x − mean[c]) / std[c] with the recipe's values (one, or one per channel).
        case fixed
    }

    public struct Intensity: Sendable, Equatable, Codable {
        public var mode: IntensityMode
        public var mean: [Double]
        public var std: [Double]

        public init(mode: IntensityMode, mean: [Double] = [], std: [Double] = []) {
            self.mode = mode
            self.mean = mean
            self.std = std
        }

        enum CodingKeys: String, CodingKey { case mode, mean, std }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            mode = try c.decode(IntensityMode.self, forKey: .mode)
            mean = try Recipe.decodeNumbers(c, .mean)
            std = try Recipe.decodeNumbers(c, .std)
        }
    }

    /// Element type of the output tensor.
    public enum DType: String, Sendable, Codable, CaseIterable {
        case float32
        case uint8
    }

    public var name: String
    /// Output rows × columns; nil keeps the size after crop (and resampling).
    public var outputSize: (rows: Int, columns: Int)?
    public var dtype: DType
    public var frames: FrameMode
    public var crop: Crop
    public var resize: Resize
    public var window: Window
    public var voiFunction: VOIFunctionChoice
    public var colour: Colour
    public var intensity: Intensity
    /// Target spacing in mm: [rows, columns] or [slices, rows, columns]; nil keeps the native spacing.
    public var spacing: [Double]?

    public init(name: String, outputSize: (rows: Int, columns: Int)?, dtype: DType = .float32,
                frames: FrameMode = .separate, crop: Crop = .none, resize: Resize = .area,
                window: Window = Window(source: .fromDicom), voiFunction: VOIFunctionChoice = .fromDicom,
                colour: Colour = .grayscale, intensity: Intensity = Intensity(mode: .unit),
                spacing: [Double]? = nil) throws {
        self.name = name
        self.outputSize = outputSize
        self.dtype = dtype
        self.frames = frames
        self.crop = crop
        self.resize = resize
        self.window = window
        self.voiFunction = voiFunction
        self.colour = colour
        self.intensity = intensity
        self.spacing = spacing
        try validate()
    }

    public static func == (a: Recipe, b: Recipe) -> Bool { a.canonicalForm == b.canonicalForm }

    /// Checks the parameters; throws `invalid_recipe`.
    public func validate() throws {
        func fail(_ detail: String) -> NormalizationError { NormalizationError(.invalidRecipe, detail) }
        if name.isEmpty { throw fail("empty name") }
        if let s = outputSize, s.rows <= 0 || s.columns <= 0 { throw fail("output size must be positive") }
        if window.index < 0 { throw fail("window index must be >= 0") }
        if window.source == .fixed || window.fallback == .fixed {
            guard let w = window.width, window.center != nil, w > 0 else {
                throw fail("a fixed window needs center and a positive width")
            }
        }
        if window.fallback == .fromDicom { throw fail("fallback cannot be from-dicom") }
        switch intensity.mode {
        case .unit, .zscore: break
        case .fixed:
            let channels = colour == .rgb ? 3 : 1
            guard [1, channels].contains(intensity.mean.count), intensity.mean.count == intensity.std.count else {
                throw fail("fixed intensity needs one mean/std, or one per channel")
            }
            if intensity.std.contains(where: { !($0 > 0) }) { throw fail("std must be positive") }
        }
        if dtype == .uint8 && intensity.mode != .unit { throw fail("uint8 output needs unit intensity") }
        if let sp = spacing {
            guard sp.count == 2 || sp.count == 3, sp.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                throw fail("spacing needs 2 or 3 positive values")
            }
        }
    }

    // MARK: identity

    /// The canonical form: sorted-key JSON of every parameter (comments and key order of the YAML do not matter).
    public var canonicalForm: String {
        var parts: [String] = []
        func num(_ d: Double) -> String {
            if d == d.rounded() && abs(d) < 1e15 { return String(Int64(d)) }
            return "\(d)"
        }
        func nums(_ a: [Double]) -> String { "[" + a.map(num).joined(separator: ",") + "]" }
        parts.append("\"colour\":\"\(colour.rawValue)\"")
        parts.append("\"crop\":\"\(crop.rawValue)\"")
        parts.append("\"dtype\":\"\(dtype.rawValue)\"")
        parts.append("\"frames\":\"\(frames.rawValue)\"")
        var intensityParts = ["\"mode\":\"\(intensity.mode.rawValue)\""]
        if intensity.mode == .fixed {
            intensityParts.insert("\"mean\":\(nums(intensity.mean))", at: 0)
            intensityParts.append("\"std\":\(nums(intensity.std))")
        }
        parts.append("\"intensity\":{\(intensityParts.joined(separator: ","))}")
        parts.append("\"name\":\"\(name)\"")
        if let s = outputSize { parts.append("\"output_size\":[\(s.rows),\(s.columns)]") }
        parts.append("\"resize\":\"\(resize.rawValue)\"")
        if let sp = spacing { parts.append("\"spacing\":\(nums(sp))") }
        parts.append("\"voi_function\":\"\(voiFunction.rawValue)\"")
        var w: [String] = []
        if let c = window.center { w.append("\"center\":\(num(c))") }
        if let f = window.fallback { w.append("\"fallback\":\"\(f.rawValue)\"") }
        w.append("\"index\":\(window.index)")
        w.append("\"source\":\"\(window.source.rawValue)\"")
        if let wd = window.width { w.append("\"width\":\(num(wd))") }
        parts.append("\"window\":{\(w.joined(separator: ","))}")
        return "{" + parts.joined(separator: ",") + "}"
    }

    /// sha256 (hex) of `canonicalForm`: equal for equal parameters, whatever the YAML's layout.
    public var contentHash: String {
        SHA256.hash(data: Data(canonicalForm.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    // MARK: loading

    /// The folder of shipped recipes: `DICOM_ETL_RECIPES` if set, else `etl/normalize` under the
    /// current directory.
    public static var defaultDirectory: String {
        if let env = ProcessInfo.processInfo.environment["DICOM_ETL_RECIPES"], !env.isEmpty { return env }
        return FileManager.default.currentDirectoryPath + "/etl/normalize"
    }

    /// Loads a recipe by name (`<directory>/<name>.yaml`) or, when `name` contains a `/` or ends in
    /// `.yaml`/`.yml`, from that path.
    public static func load(name: String, directory: String = Recipe.defaultDirectory) throws -> Recipe {
        let path: String
        if name.contains("/") || name.hasSuffix(".yaml") || name.hasSuffix(".yml") {
            path = name
        } else {
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
                throw NormalizationError(.recipeNotFound, "bad recipe name")
            }
            path = directory + "/" + name + ".yaml"
        }
        guard let data = FileManager.default.contents(atPath: path),
              let text = String(data: data, encoding: .utf8) else {
            throw NormalizationError(.recipeNotFound)
        }
        return try parse(yaml: text)
    }

    /// Parses a recipe from YAML text.
    public static func parse(yaml: String) throws -> Recipe {
        let file: RecipeFile
        do {
            file = try YAMLDecoder().decode(RecipeFile.self, from: yaml)
        } catch let e as NormalizationError {
            throw e
        } catch {
            throw NormalizationError(.invalidRecipe, "YAML does not match the recipe schema")
        }
        var size: (Int, Int)?
        if let s = file.output?.size {
            guard s.count == 2 else { throw NormalizationError(.invalidRecipe, "output.size needs [rows, columns]") }
            size = (s[0], s[1])
        }
        return try Recipe(
            name: file.name, outputSize: size, dtype: file.output?.dtype ?? .float32,
            frames: file.frames ?? .separate, crop: file.crop ?? .none, resize: file.resize ?? .area,
            window: file.window ?? Window(source: .fromDicom), voiFunction: file.voiFunction ?? .fromDicom,
            colour: file.colour ?? .grayscale, intensity: file.intensity ?? Intensity(mode: .unit),
            spacing: file.spacing)
    }

    static func decodeNumbers<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ key: K) throws -> [Double] {
        if let a = try? c.decodeIfPresent([Double].self, forKey: key) { return a }
        if let d = try c.decodeIfPresent(Double.self, forKey: key) { return [d] }
        return []
    }
}

/// The YAML layout of a recipe file.
private struct RecipeFile: Decodable {
    struct Output: Decodable {
        var size: [Int]?
        var dtype: Recipe.DType?
    }

    var name: String
    var output: Output?
    var frames: Recipe.FrameMode?
    var crop: Recipe.Crop?
    var resize: Recipe.Resize?
    var window: Recipe.Window?
    var voiFunction: Recipe.VOIFunctionChoice?
    var colour: Recipe.Colour?
    var intensity: Recipe.Intensity?
    var spacing: [Double]?

    enum CodingKeys: String, CodingKey {
        case name, output, frames, crop, resize, window, colour, intensity, spacing
        case voiFunction = "voi-function"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Unknown keys are a mistake in a recipe, not something to ignore silently.
        let known = Set(["name", "output", "frames", "crop", "resize", "window", "colour", "intensity",
                         "spacing", "voi-function"])
        let any = try decoder.container(keyedBy: AnyKey.self)
        if let unknown = any.allKeys.first(where: { !known.contains($0.stringValue) }) {
            throw NormalizationError(.invalidRecipe, "unknown key \(unknown.stringValue)")
        }
        name = try c.decode(String.self, forKey: .name)
        output = try c.decodeIfPresent(Output.self, forKey: .output)
        frames = try c.decodeIfPresent(Recipe.FrameMode.self, forKey: .frames)
        crop = try c.decodeIfPresent(Recipe.Crop.self, forKey: .crop)
        resize = try c.decodeIfPresent(Recipe.Resize.self, forKey: .resize)
        window = try c.decodeIfPresent(Recipe.Window.self, forKey: .window)
        voiFunction = try c.decodeIfPresent(Recipe.VOIFunctionChoice.self, forKey: .voiFunction)
        colour = try c.decodeIfPresent(Recipe.Colour.self, forKey: .colour)
        intensity = try c.decodeIfPresent(Recipe.Intensity.self, forKey: .intensity)
        spacing = try c.decodeIfPresent([Double].self, forKey: .spacing)
    }
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
