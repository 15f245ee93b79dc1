// PatientSplit: train / validation / test by a keyed hash of the patient pseudonym, so that every record of a
// patient lands in the same split, the assignment is the same on every run with the same key, and it cannot be
// recomputed (or steered) without the key.
import Crypto
import Foundation

/// A split of the export.
public enum SplitName: String, Sendable, CaseIterable, Codable {
    case train
    case validation
    case test
}

/// Assigns patients to splits.
public struct PatientSplit: Sendable {
    let key: [UInt8]
    /// Fractions of train and validation; the rest is test.
    public let train: Double
    public let validation: Double
    /// A public fingerprint of the key (first 16 hex digits of its SHA-256), recorded in the dataset metadata.
    public let keyID: String

    /// - Parameters:
    ///   - key: the split key (any bytes; keep it to reproduce or extend a split).
    ///   - fractions: train, validation and test fractions (normalised to sum 1).
    public init(key: [UInt8], fractions: (train: Double, validation: Double, test: Double)) throws {
        let sum = fractions.train + fractions.validation + fractions.test
        guard !key.isEmpty, fractions.train >= 0, fractions.validation >= 0, fractions.test >= 0, sum > 0 else {
            throw ExportError(.invalidArgument)
        }
        self.key = key
        train = fractions.train / sum
        validation = fractions.validation / sum
        keyID = String(SHA256.hash(data: key).map { String(format: "%02x", $0) }.joined().prefix(16))
    }

    /// The position of a patient in [0, 1): the first 8 bytes of HMAC-SHA256(key, pseudonym) over 2^64.
    public func position(_ patientID: String) -> Double {
        let mac = HMAC<SHA256>.authenticationCode(for: Data(patientID.utf8), using: SymmetricKey(data: key))
        let x = Array(mac).prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return Double(x >> 11) / Double(UInt64(1) << 53)
    }

    public func split(_ patientID: String) -> SplitName {
        let u = position(patientID)
        return u < train ? .train : (u < train + validation ? .validation : .test)
    }
}
