// `dicom-etl decode FILE…`: decode pixel data and report throughput (what bench/decode/run.sh measures).
import ArgumentParser
import DICOM
import Foundation

struct Decode: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode the pixel data of files and print files/s and MB/s as JSON.",
        discussion: "Files that do not decode are counted, not fatal. Each thread opens and decodes its own files."
    )

    @Argument(help: "DICOM files.")
    var files: [String]

    @Option(help: "Decoding threads.")
    var threads: Int = 1

    @Option(help: "Decode every file this many times.")
    var repeats: Int = 1

    func validate() throws {
        guard threads >= 1, repeats >= 1 else { throw ValidationError("threads and repeats must be at least 1") }
    }

    func run() async throws {
        let work = Array(repeating: files, count: repeats).flatMap { $0 }
        let start = ContinuousClock.now
        let totals = await withTaskGroup(of: (Int, Int, Int).self) { group in
            for t in 0..<threads {
                let mine = stride(from: t, to: work.count, by: threads).map { work[$0] }
                group.addTask {
                    var decoded = 0, failed = 0, bytes = 0
                    for path in mine {
                        do {
                            let pixels = try DicomFile.open(path: path).decodePixels()
                            decoded += 1
                            bytes += pixels.bytes.count
                        } catch {
                            failed += 1
                        }
                    }
                    return (decoded, failed, bytes)
                }
            }
            var sum = (0, 0, 0)
            for await part in group { sum = (sum.0 + part.0, sum.1 + part.1, sum.2 + part.2) }
            return sum
        }
        let seconds = (ContinuousClock.now - start) / .seconds(1)
        let filesPerSecond = Double(totals.0) / seconds
        let megabytesPerSecond = Double(totals.2) / 1_000_000 / seconds
        print(#"{"threads":\#(threads),"decoded":\#(totals.0),"failed":\#(totals.1),"decodedBytes":\#(totals.2),"seconds":\#(String(format: "%.3f", seconds)),"filesPerSecond":\#(String(format: "%.1f", filesPerSecond)),"decodedMBPerSecond":\#(String(format: "%.1f", megabytesPerSecond))}"#)
    }
}
