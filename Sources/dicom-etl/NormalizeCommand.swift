// dicom-etl normalize: runs a normalisation recipe over files or folders and writes .npy tensors,
// JSON sidecars and PNG previews. Messages name inputs by position only (paths may hold patient names).
import ArgumentParser
import DICOM
import Foundation
import Normalization

struct Normalize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "normalize",
        abstract: "Turn DICOM images into model-ready tensors with a recipe from etl/normalize.",
        discussion: """
        Writes <name>.npy (NumPy 1.0, little endian), <name>.json (sidecar) and <name>.png (8-bit preview) \
        per tensor. Recipes with `frames: volume` assemble the inputs of each series into one volume.
        """)

    @Argument(help: "DICOM files or folders (searched recursively).")
    var inputs: [String]

    @Option(help: "Recipe name (looked up in --recipes) or a path to a recipe YAML file.")
    var recipe: String

    @Option(help: "Output folder (created if missing).")
    var out: String

    @Option(help: "Folder of recipe files.")
    var recipes: String = Recipe.defaultDirectory

    @Flag(help: "Do not write PNG previews.")
    var noPreview = false

    @Option(help: "Benchmark: open, decode and normalise the inputs repeatedly for this many seconds without writing, then print tensors/s as JSON.")
    var benchSeconds: Double?

    func validate() throws {
        if inputs.isEmpty { throw ValidationError("give at least one input file or folder") }
        if let b = benchSeconds, !(b > 0) { throw ValidationError("--bench-seconds must be positive") }
    }

    func run() async throws {
        let recipe = try Recipe.load(name: self.recipe, directory: recipes)
        let normalizer = Normalizer(recipe: recipe)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let files = Self.expand(inputs)
        if files.count < inputs.count { Self.report("some inputs do not exist") }
        if let seconds = benchSeconds {
            try Self.bench(files, normalizer: normalizer, seconds: seconds)
            return
        }
        var written = 0, failed = 0

        func emit(_ tensor: Tensor, name: String) throws {
            let base = out + "/" + name
            try NPYWriter.write(tensor, to: base + ".npy")
            try tensor.metadata.sidecarJSON().write(to: URL(fileURLWithPath: base + ".json"), options: .atomic)
            if !noPreview { try PNGWriter.write(tensor, to: base + ".png") }
            written += 1
        }

        if recipe.frames == .volume && files.count > 1 {
            // Group by series; a file that cannot be opened is reported and left out.
            var series: [String: [(Int, DicomFile)]] = [:]
            var order: [String] = []
            for (i, path) in files.enumerated() {
                do {
                    let f = try DicomFile.open(path: path)
                    let key = f.dataset.string(Tag(0x0020, 0x000E)) ?? "input-\(i)"
                    if series[key] == nil { order.append(key) }
                    series[key, default: []].append((i, f))
                } catch {
                    failed += 1
                    Self.report("input \(i + 1): not normalised (\(Self.reason(error)))")
                }
            }
            for (n, key) in order.enumerated() {
                let members = series[key]!
                do {
                    let volume = try VolumeAssembler.assemble(members.map(\.1), normalizer: normalizer)
                    for issue in volume.issues {
                        Self.report("series \(n + 1): \(issue.code.rawValue) between ordered slices")
                    }
                    try emit(volume.tensor, name: String(format: "series-%04d", n + 1))
                } catch {
                    failed += 1
                    Self.report("series \(n + 1): not normalised (\(Self.reason(error)))")
                }
            }
        } else {
            for (i, path) in files.enumerated() {
                do {
                    let file = try DicomFile.open(path: path)
                    let tensors = try normalizer.normalize(file)
                    let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
                    for (k, t) in tensors.enumerated() {
                        try emit(t, name: tensors.count == 1 ? stem : "\(stem)-f\(k)")
                    }
                } catch {
                    failed += 1
                    Self.report("input \(i + 1): not normalised (\(Self.reason(error)))")
                }
            }
        }
        print("normalize: recipe \(recipe.name) (\(recipe.contentHash.prefix(12))): \(written) tensors written, \(failed) inputs failed")
        if written == 0 && failed > 0 { throw ExitCode(1) }
    }

    /// Times open + decode + normalise (no writing): each file's tensors, or one volume of all inputs
    /// for `frames: volume` recipes. Prints {"tensors", "seconds", "tensors_per_second"}.
    static func bench(_ files: [String], normalizer: Normalizer, seconds: Double) throws {
        let clock = ContinuousClock()
        let start = clock.now
        var count = 0
        func elapsed() -> Double {
            let d = clock.now - start
            return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        }
        while elapsed() < seconds {
            if normalizer.recipe.frames == .volume && files.count > 1 {
                let volume = try VolumeAssembler.assemble(files.map { try DicomFile.open(path: $0) }, normalizer: normalizer)
                count += volume.tensor.elementCount > 0 ? 1 : 0
            } else {
                for path in files { count += try normalizer.normalize(try DicomFile.open(path: path)).count }
            }
        }
        let t = elapsed()
        print("{\"tensors\": \(count), \"seconds\": \(t), \"tensors_per_second\": \(Double(count) / t)}")
    }

    static func reason(_ error: any Error) -> String {
        if let e = error as? NormalizationError { return e.reason }
        if let e = error as? DicomError { return e.reason }
        return "error"
    }

    static func report(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// Files given, and the regular files under folders given, in sorted order.
    static func expand(_ inputs: [String]) -> [String] {
        var out: [String] = []
        let fm = FileManager.default
        for input in inputs {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: input, isDirectory: &isDir) else { continue }
            if !isDir.boolValue { out.append(input); continue }
            var found: [String] = []
            if let e = fm.enumerator(atPath: input) {
                for case let rel as String in e {
                    var d: ObjCBool = false
                    let p = input + "/" + rel
                    if fm.fileExists(atPath: p, isDirectory: &d), !d.boolValue { found.append(p) }
                }
            }
            out += found.sorted()
        }
        return out
    }
}
