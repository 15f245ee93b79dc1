// decode-bench: decode the pixel data of the given files on N threads and print files/s and MB/s as JSON.
// Usage: decode-bench THREADS REPEATS FILE…   (bench/decode/run.sh runs it beside DCMTK's tools and pydicom)
import DICOM
import Foundation

let arguments = CommandLine.arguments
guard arguments.count >= 4, let threads = Int(arguments[1]), let repeats = Int(arguments[2]), threads >= 1, repeats >= 1 else {
    FileHandle.standardError.write(Data("usage: decode-bench THREADS REPEATS FILE…\n".utf8))
    exit(2)
}
let files = Array(arguments.dropFirst(3))
let work = Array(repeating: files, count: repeats).flatMap { $0 }
/// Totals of all threads, added under a lock once per thread.
final class Totals: @unchecked Sendable {
    let lock = NSLock()
    var decoded = 0, failed = 0, bytes = 0, sourceBytes = 0
    func add(_ d: Int, _ f: Int, _ b: Int, _ s: Int) {
        lock.lock()
        decoded += d; failed += f; bytes += b; sourceBytes += s
        lock.unlock()
    }
}
let totals = Totals()
let start = ContinuousClock.now
DispatchQueue.concurrentPerform(iterations: threads) { t in
    var d = 0, f = 0, b = 0, s = 0
    for index in stride(from: t, to: work.count, by: threads) {
        do {
            let pixels = try DicomFile.open(path: work[index]).decodePixels()
            d += 1
            b += pixels.bytes.count
            s += Int((try? FileManager.default.attributesOfItem(atPath: work[index])[.size] as? Int) ?? 0)
        } catch {
            f += 1
        }
    }
    totals.add(d, f, b, s)
}
let seconds = (ContinuousClock.now - start) / .seconds(1)
print(String(format: #"{"threads":%d,"decoded":%d,"failed":%d,"seconds":%.3f,"filesPerSecond":%.1f,"fileMBPerSecond":%.1f,"decodedMBPerSecond":%.1f}"#,
             threads, totals.decoded, totals.failed, seconds, Double(totals.decoded) / seconds, Double(totals.sourceBytes) / 1e6 / seconds, Double(totals.bytes) / 1e6 / seconds))
