// How a de-identified file is written: in a transfer syntax the writer supports, and under an identity (file meta
// SOP Class and Instance UID) that agrees with its data set and is the same on every run for the same input.
import Crypto
import DICOM

/// The transfer syntax a de-identified file is written in.
enum OutputSyntax {
    /// Nil when the file is written in the syntax it was read in. Explicit VR little endian for a deflated data
    /// set (deflate only compresses the encoding; many readers, dicom3tools among them, cannot inflate) and for
    /// syntaxes DCMTK cannot write (HTJ2K, deflated image frames), whose pixel data is first decoded and stored
    /// natively. Call before any other change to the file.
    static func prepare(_ file: DicomFile) throws -> String? {
        let syntax = file.transferSyntaxUID
        if syntax == TransferSyntax.deflatedExplicitVRLittleEndian { return TransferSyntax.explicitVRLittleEndian }
        guard !TransferSyntax.isWritable(syntax) else { return nil }
        if file.dataset.contains(Tags.pixelData) { try file.storeNativePixels(try file.decodePixels()) }
        return TransferSyntax.explicitVRLittleEndian
    }
}

/// The SOP Instance UID of a de-identified file and its file meta.
struct FileIdentity {
    /// The data set's SOP Class UID is the Media Storage Directory's: a DICOMDIR has no SOP Instance UID.
    private let isDirectory: Bool
    /// The file meta's MediaStorageSOPInstanceUID as read.
    private let metaInstanceUID: String?
    /// A digest of the whole input, taken only when neither the data set nor the file meta names the instance.
    private let contentDigest: String?

    static let directoryStorage = "1.2.840.10008.1.3.10"

    /// Reads what is needed from `file` before it is changed.
    init(_ file: DicomFile) throws {
        let meta = file.hasFileMeta ? file.metaInformation : nil
        let sopClass = Deidentifier.value(Tags.sopClassUID, file.dataset) ?? meta.flatMap { Deidentifier.value(Tags.mediaStorageSOPClassUID, $0) }
        isDirectory = sopClass.map(Pseudonymizer.trimUID) == Self.directoryStorage
        metaInstanceUID = meta.flatMap { Deidentifier.value(Tags.mediaStorageSOPInstanceUID, $0) }.map(Pseudonymizer.trimUID).flatMap { $0.isEmpty ? nil : $0 }
        let instance = Deidentifier.value(Tags.sopInstanceUID, file.dataset).map(Pseudonymizer.trimUID) ?? ""
        if instance.isEmpty && metaInstanceUID == nil {
            contentDigest = SHA256.hash(data: try file.serialized()).map { String(format: "%02x", $0) }.joined()
        } else {
            contentDigest = nil
        }
    }

    /// After de-identification: a data set without a SOP Instance UID (a DICOMDIR excepted) gets one, the keyed
    /// pseudonym of the file meta's, else of the input's digest; the file meta names the same instance and the
    /// data set's SOP Class (the writer fills the rest of the file meta).
    func settle(_ file: DicomFile, pseudonymizer: Pseudonymizer) throws {
        let ds = file.dataset, meta = file.metaInformation
        var instance = Deidentifier.value(Tags.sopInstanceUID, ds).map(Pseudonymizer.trimUID) ?? ""
        if instance.isEmpty {
            instance = pseudonymizer.uid(metaInstanceUID ?? "content:sha256:" + (contentDigest ?? ""))
            if !isDirectory { try ds.set(Tags.sopInstanceUID, string: instance, vr: .UI) }
        }
        try meta.set(Tags.mediaStorageSOPInstanceUID, string: instance, vr: .UI)
        if let sopClass = Deidentifier.value(Tags.sopClassUID, ds).map(Pseudonymizer.trimUID), !sopClass.isEmpty {
            try meta.set(Tags.mediaStorageSOPClassUID, string: sopClass, vr: .UI)
        }
    }
}
