// inference-bench: images/s of the Swift forward pass (batch 1 and 64, 1 and 2 threads), its GFLOP/s,
// and the GFLOP/s of a bare cblas_sgemm on the network's largest GEMM shape and on 1024³, in one run.
//   [INFERENCE_CHUNK=n] inference-bench <model version folder> [seconds per figure]
import COpenBLAS
import Dispatch
import Foundation
import Inference

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// CPU seconds used by the whole process (all threads): a figure less bent by other load than wall time.
func cpuTime() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// Runs `body` repeatedly for about `seconds` on `threads` threads; returns calls per wall second and per
/// CPU second (all threads).
func rate(seconds: Double, threads: Int, _ body: @Sendable @escaping (Int) -> Void) -> (wall: Double, cpu: Double) {
    let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: threads)
    counts.initialize(repeating: 0)
    defer { counts.deallocate() }
    nonisolated(unsafe) let c = counts
    for t in 0..<threads { body(t) }  // warm-up: workspaces, caches
    let start = now()
    let cpu0 = cpuTime()
    DispatchQueue.concurrentPerform(iterations: threads) { t in
        var n = 0
        while now() - start < seconds {
            body(t)
            n += 1
        }
        c[t] = n
    }
    let calls = Double(counts.reduce(0, +))
    return (calls / (now() - start), calls / (cpuTime() - cpu0))
}

let args = CommandLine.arguments
guard args.count >= 2 else {
    print("usage: inference-bench <model version folder> [seconds per figure]")
    exit(2)
}
let seconds = args.count > 2 ? Double(args[2]) ?? 2 : 2
let chunk = Int(ProcessInfo.processInfo.environment["INFERENCE_CHUNK"] ?? "") ?? InferenceModel.defaultChunkSize
let model = try InferenceModel.load(directory: URL(fileURLWithPath: args[1]), chunkSize: chunk)
let inputs = try NpyArray(contentsOf: URL(fileURLWithPath: args[1]).appendingPathComponent("reference_inputs.npy"))
let size = model.inputSize
let flops = Double(model.flopsPerImage)
print(String(format: "model %@ %@: %.2f MFLOP/image; OpenBLAS threads %d; chunk %d images (INFERENCE_CHUNK)",
             model.metadata.name, model.metadata.version, flops / 1e6, openblas_get_num_threads(), chunk))

final class Buffers: @unchecked Sendable {
    let input: [Float]
    var outputs: [[Float]]
    init(input: [Float], threads: Int) {
        self.input = input
        outputs = Array(repeating: [Float](repeating: 0, count: 64), count: threads)
    }
}
var batch64 = [Float]()
while batch64.count < 64 * size { batch64 += inputs.values }
let buffers = Buffers(input: Array(batch64[0..<(64 * size)]), threads: 2)

for batch in [1, 64] {
    for threads in [1, 2] {
        let r = rate(seconds: seconds, threads: threads) { t in
            buffers.input.withUnsafeBufferPointer { inp in
                buffers.outputs[t].withUnsafeMutableBufferPointer { out in
                    let b = UnsafeBufferPointer(rebasing: inp[(t * batch % 64 * size)..<((t * batch % 64 + batch) * size)])
                    try! model.forward(b, count: batch, into: UnsafeMutableBufferPointer(rebasing: out[0..<batch]))
                }
            }
        }
        let images = r.wall * Double(batch)
        print(String(format: "swift  batch %2d  threads %d (independent streams): %8.0f images/s  %6.1f GFLOP/s  (%6.0f images/CPU-s)",
                     batch, threads, images, images * flops / 1e9, r.cpu * Double(batch)))
    }
}
let split = rate(seconds: seconds, threads: 1) { _ in
    buffers.input.withUnsafeBufferPointer { inp in
        buffers.outputs[0].withUnsafeMutableBufferPointer { out in
            try! model.forward(inp, count: 64, into: out, threads: 2)
        }
    }
}
print(String(format: "swift  batch 64  threads 2 (one batch split in 2):  %8.0f images/s  %6.1f GFLOP/s  (%6.0f images/CPU-s)",
             split.wall * 64, split.wall * 64 * flops / 1e9, split.cpu * 64))

/// sgemm GFLOP/s on one thread for C(m×n) = A(m×k)·B(k×n), per wall second and per CPU second.
func sgemm(_ m: Int, _ n: Int, _ k: Int) -> String {
    let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: k * n)
    var c = [Float](repeating: 0, count: m * n)
    let t0 = now()
    let c0 = cpuTime()
    var reps = 0
    repeat {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b,
                    Int32(n), 0, &c, Int32(n))
        reps += 1
    } while now() - t0 < seconds
    let work = 2 * Double(m * n * k) * Double(reps) / 1e9
    return String(format: "%6.1f GFLOP/s  (%6.1f per CPU-s)", work / (now() - t0), work / (cpuTime() - c0))
}
print("sgemm  1 thread  12544×64×288 (conv2 at batch 64): \(sgemm(12544, 64, 288))")
print(String(format: "sgemm  1 thread  196×64×288   (conv2 at batch 1):  %@", sgemm(196, 64, 288)))
print(String(format: "sgemm  1 thread  1024×1024×1024:                   %@", sgemm(1024, 1024, 1024)))
