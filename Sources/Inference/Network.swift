// The forward pass: a compiled plan of NHWC stages run on preallocated buffers, convolutions as
// im2col (rows ordered ky, kx, c) times the HWIO kernel through OpenBLAS's cblas_sgemm.
import COpenBLAS
import Foundation

/// Activation applied after a convolution or dense layer.
enum Activation: Sendable {
    case linear, relu, sigmoid, softmax

    init(_ name: String?) throws(InferenceError) {
        switch name ?? "linear" {
        case "linear": self = .linear
        case "relu": self = .relu
        case "sigmoid": self = .sigmoid
        case "softmax": self = .softmax
        default: throw InferenceError(.unsupportedLayer)
        }
    }
}

/// One step of the compiled plan, with the shapes it reads and writes (per image).
enum Stage: Sendable {
    /// 'same' stride-1 convolution; the raw GEMM result is written, bias and activation are applied
    /// by the following pooling stage when `fused`, otherwise in place.
    case conv(height: Int, width: Int, cin: Int, cout: Int, kh: Int, kw: Int, weights: Int, bias: Int,
              activation: Activation, fused: Bool, columnsIndex: Int)
    /// Non-overlapping 'valid' pooling; `bias`/`activation` belong to the preceding convolution when fused.
    case pool(height: Int, width: Int, channels: Int, ph: Int, pw: Int, max: Bool, bias: Int?, activation: Activation)
    case globalAveragePool(height: Int, width: Int, channels: Int)
    case dense(inputs: Int, outputs: Int, weights: Int, bias: Int, activation: Activation)
}

/// A network compiled from a weights file: shared between threads. `@unchecked` because the weights sit
/// in a raw buffer, written once in `init` and only read afterwards.
final class Network: @unchecked Sendable {
    let inputShape: [Int]  // H, W, C
    let outputUnits: Int
    let stages: [Stage]
    /// Floats per image of the largest activation, and of each convolution's im2col matrix.
    let maxActivation: Int
    let columnSizes: [Int]
    /// FLOPs of one image (2 per multiply-add of the convolutions and dense layers).
    let flopsPerImage: Int
    private let weights: UnsafeMutableBufferPointer<Float>

    init(_ file: WeightsFile) throws(InferenceError) {
        let shape = file.header.inputShape
        guard shape.count == 3, shape.allSatisfy({ $0 > 0 }) else { throw InferenceError(.shapeMismatch) }
        inputShape = shape
        var (h, w, c) = (shape[0], shape[1], shape[2])
        var flat: Int? = nil  // set once the spatial dimensions are gone
        var stages: [Stage] = []
        var maxActivation = h * w * c
        var columnSizes: [Int] = []
        var flops = 0
        let payloadCount = file.payload.count

        func tensor(_ ref: TensorRef?, count: Int) throws(InferenceError) -> Int {
            guard let ref, ref.count == count, ref.offset >= 0, ref.offset + ref.count <= payloadCount else {
                throw InferenceError(.shapeMismatch)
            }
            return ref.offset
        }

        let specs = file.header.layers
        var i = 0
        while i < specs.count {
            let s = specs[i]
            switch s.type {
            case "conv2d":
                guard flat == nil, let k = s.kernel, k.count == 2, k[0] > 0, k[1] > 0, s.stride ?? 1 == 1,
                      s.padding ?? "same" == "same", let cin = s.in, cin == c, let cout = s.out, cout > 0
                else { throw InferenceError(.shapeMismatch) }
                let act = try Activation(s.activation)
                guard act == .linear || act == .relu else { throw InferenceError(.unsupportedLayer) }
                let wOff = try tensor(s.weights, count: k[0] * k[1] * cin * cout)
                let bOff = try tensor(s.bias, count: cout)
                let next = i + 1 < specs.count ? specs[i + 1].type : ""
                let fused = next == "maxpool2d" || next == "avgpool2d"
                stages.append(.conv(height: h, width: w, cin: cin, cout: cout, kh: k[0], kw: k[1], weights: wOff,
                                    bias: bOff, activation: act, fused: fused, columnsIndex: columnSizes.count))
                columnSizes.append(h * w * k[0] * k[1] * cin)
                flops += 2 * h * w * k[0] * k[1] * cin * cout
                c = cout
                maxActivation = max(maxActivation, h * w * c)
                if fused {
                    let p = specs[i + 1]
                    guard let pool = p.pool, pool.count == 2, pool[0] > 0, pool[1] > 0, h / pool[0] > 0, w / pool[1] > 0
                    else { throw InferenceError(.shapeMismatch) }
                    stages.append(.pool(height: h, width: w, channels: c, ph: pool[0], pw: pool[1],
                                        max: p.type == "maxpool2d", bias: bOff, activation: act))
                    h /= pool[0]
                    w /= pool[1]
                    i += 1
                }
            case "maxpool2d", "avgpool2d":
                guard flat == nil, let pool = s.pool, pool.count == 2, pool[0] > 0, pool[1] > 0,
                      h / pool[0] > 0, w / pool[1] > 0 else { throw InferenceError(.shapeMismatch) }
                stages.append(.pool(height: h, width: w, channels: c, ph: pool[0], pw: pool[1],
                                    max: s.type == "maxpool2d", bias: nil, activation: .linear))
                h /= pool[0]
                w /= pool[1]
            case "global_average_pool":
                guard flat == nil else { throw InferenceError(.shapeMismatch) }
                stages.append(.globalAveragePool(height: h, width: w, channels: c))
                flat = c
            case "dense":
                guard let n = flat, let inputs = s.in, inputs == n, let outputs = s.out, outputs > 0 else {
                    throw InferenceError(.shapeMismatch)
                }
                let act = try Activation(s.activation)
                let wOff = try tensor(s.weights, count: inputs * outputs)
                let bOff = try tensor(s.bias, count: outputs)
                stages.append(.dense(inputs: inputs, outputs: outputs, weights: wOff, bias: bOff, activation: act))
                flops += 2 * inputs * outputs
                flat = outputs
                maxActivation = max(maxActivation, outputs)
            default:
                throw InferenceError(.unsupportedLayer)
            }
            i += 1
        }
        guard let units = flat, !stages.isEmpty else { throw InferenceError(.shapeMismatch) }
        self.stages = stages
        self.outputUnits = units
        self.maxActivation = maxActivation
        self.columnSizes = columnSizes
        self.flopsPerImage = flops
        weights = .allocate(capacity: max(file.payload.count, 1))
        _ = weights.initialize(from: file.payload)
    }

    deinit { weights.deallocate() }

    var inputSize: Int { inputShape[0] * inputShape[1] * inputShape[2] }

    /// Runs `count` images (≤ `workspace.capacity`) from `input` and writes `count × outputUnits` floats.
    func forward(_ input: UnsafePointer<Float>, count: Int, output: UnsafeMutablePointer<Float>, workspace: Workspace) {
        precondition(count <= workspace.capacity)
        let wts = UnsafePointer(weights.baseAddress!)
        var src = workspace.a
        var dst = workspace.b
        src.update(from: input, count: count * inputSize)
        for stage in stages {
            switch stage {
            case let .conv(h, w, cin, cout, kh, kw, wOff, bOff, act, fused, ci):
                let k = kh * kw * cin
                let m = count * h * w
                let cols = workspace.columns[ci]
                im2col(src, count: count, height: h, width: w, channels: cin, kh: kh, kw: kw, into: cols)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(cout), Int32(k),
                            1, cols, Int32(k), wts + wOff, Int32(cout), 0, dst, Int32(cout))
                if !fused { biasActivate(dst, rows: m, channels: cout, bias: wts + bOff, activation: act) }
            case let .pool(h, w, c, ph, pw, isMax, bOff, act):
                pool(src, into: dst, count: count, height: h, width: w, channels: c, ph: ph, pw: pw, max: isMax,
                     bias: bOff.map { wts + $0 }, relu: act == .relu)
            case let .globalAveragePool(h, w, c):
                let scale = 1 / Float(h * w)
                for n in 0..<count {
                    let o = dst + n * c
                    o.update(repeating: 0, count: c)
                    var p = src + n * h * w * c
                    for _ in 0..<(h * w) {
                        for j in 0..<c { o[j] += p[j] }
                        p += c
                    }
                    for j in 0..<c { o[j] *= scale }
                }
            case let .dense(inputs, outputs, wOff, bOff, act):
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(count), Int32(outputs), Int32(inputs),
                            1, src, Int32(inputs), wts + wOff, Int32(outputs), 0, dst, Int32(outputs))
                biasActivate(dst, rows: count, channels: outputs, bias: wts + bOff, activation: act)
            }
            swap(&src, &dst)
        }
        output.update(from: src, count: count * outputUnits)
    }

    /// im2col for a 'same' stride-1 convolution: row (n, y, x) holds the (ky, kx, c) patch. Padding cells
    /// are never written: the workspace zeroed them once.
    private func im2col(_ src: UnsafeMutablePointer<Float>, count: Int, height h: Int, width w: Int, channels c: Int,
                        kh: Int, kw: Int, into cols: UnsafeMutablePointer<Float>) {
        let padT = (kh - 1) / 2
        let padL = (kw - 1) / 2
        let k = kh * kw * c
        for n in 0..<count {
            let image = src + n * h * w * c
            for y in 0..<h {
                for x in 0..<w {
                    let row = cols + ((n * h + y) * w + x) * k
                    let kx0 = max(0, padL - x)
                    let kx1 = min(kw, w + padL - x)
                    for ky in 0..<kh {
                        let iy = y + ky - padT
                        if iy < 0 || iy >= h { continue }
                        let from = image + (iy * w + x + kx0 - padL) * c
                        let to = row + (ky * kw + kx0) * c
                        let n = (kx1 - kx0) * c
                        if n < 16 {
                            for j in 0..<n { to[j] = from[j] }  // a call to memmove costs more than a few floats
                        } else {
                            to.update(from: from, count: n)
                        }
                    }
                }
            }
        }
    }

    private func biasActivate(_ x: UnsafeMutablePointer<Float>, rows: Int, channels c: Int, bias: UnsafePointer<Float>,
                              activation: Activation) {
        for r in 0..<rows {
            let p = x + r * c
            for j in 0..<c { p[j] += bias[j] }
            switch activation {
            case .linear: break
            case .relu: for j in 0..<c { p[j] = Swift.max(p[j], 0) }
            case .sigmoid: for j in 0..<c { p[j] = 1 / (1 + expf(-p[j])) }
            case .softmax:
                var m = p[0]
                for j in 1..<c { m = max(m, p[j]) }
                var sum: Float = 0
                for j in 0..<c { p[j] = expf(p[j] - m); sum += p[j] }
                for j in 0..<c { p[j] /= sum }
            }
        }
    }

    /// Pooling, with the preceding convolution's bias and ReLU applied on the way (max commutes with both).
    private func pool(_ src: UnsafeMutablePointer<Float>, into dst: UnsafeMutablePointer<Float>, count: Int,
                      height h: Int, width w: Int, channels c: Int, ph: Int, pw: Int, max isMax: Bool,
                      bias: UnsafePointer<Float>?, relu: Bool) {
        let oh = h / ph
        let ow = w / pw
        let scale = 1 / Float(ph * pw)
        for n in 0..<count {
            let image = src + n * h * w * c
            for oy in 0..<oh {
                for ox in 0..<ow {
                    let o = dst + ((n * oh + oy) * ow + ox) * c
                    if isMax {
                        // branch-free maxima so that the loops vectorise
                        let first = image + ((oy * ph) * w + ox * pw) * c
                        o.update(from: first, count: c)
                        for dy in 0..<ph {
                            for dx in 0..<pw where dy != 0 || dx != 0 {
                                let p = image + ((oy * ph + dy) * w + ox * pw + dx) * c
                                for j in 0..<c { o[j] = Swift.max(o[j], p[j]) }
                            }
                        }
                        if let bias {
                            if relu {
                                for j in 0..<c { o[j] = Swift.max(o[j] + bias[j], 0) }
                            } else {
                                for j in 0..<c { o[j] += bias[j] }
                            }
                        } else if relu {
                            for j in 0..<c { o[j] = Swift.max(o[j], 0) }
                        }
                    } else {
                        o.update(repeating: 0, count: c)
                        for dy in 0..<ph {
                            for dx in 0..<pw {
                                let p = image + ((oy * ph + dy) * w + ox * pw + dx) * c
                                for j in 0..<c {
                                    var v = p[j] + (bias?[j] ?? 0)
                                    if relu && v < 0 { v = 0 }
                                    o[j] += v
                                }
                            }
                        }
                        for j in 0..<c { o[j] *= scale }
                    }
                }
            }
        }
    }
}

/// Buffers for one forward pass of up to `capacity` images; used by one thread at a time.
final class Workspace: @unchecked Sendable {
    let capacity: Int
    let a: UnsafeMutablePointer<Float>
    let b: UnsafeMutablePointer<Float>
    let columns: [UnsafeMutablePointer<Float>]
    private let sizes: [Int]

    init(network: Network, capacity: Int) {
        self.capacity = capacity
        let act = capacity * network.maxActivation
        a = .allocate(capacity: act)
        a.initialize(repeating: 0, count: act)
        b = .allocate(capacity: act)
        b.initialize(repeating: 0, count: act)
        sizes = network.columnSizes.map { $0 * capacity }
        columns = sizes.map { n in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
            p.initialize(repeating: 0, count: n)
            return p
        }
    }

    deinit {
        a.deallocate()
        b.deallocate()
        for p in columns { p.deallocate() }
    }
}
