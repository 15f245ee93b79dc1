// Burned-in text: which files are suspected, which signature matches, and blanking regions in pixels.
import DICOM

enum BurnedInCheck {
    /// True when BurnedInAnnotation is YES or the modality, SOP class, series description or image type is
    /// one known to carry text.
    static func suspects(_ ds: DataSet, policy: BurnedInPolicy) -> Bool {
        if Deidentifier.value(Tags.burnedInAnnotation, ds)?.trimmingSpaces().uppercased() == "YES" { return true }
        if let m = Deidentifier.value(Tags.modality, ds)?.trimmingSpaces().uppercased(), policy.modalities.contains(m) { return true }
        if let c = Deidentifier.value(Tags.sopClassUID, ds).map(Pseudonymizer.trimUID), policy.sopClasses.contains(c) { return true }
        if let d = Deidentifier.value(Tags.seriesDescription, ds)?.uppercased(),
           policy.seriesDescriptionContains.contains(where: { d.contains($0.uppercased()) }) { return true }
        let types = (Deidentifier.value(Tags.imageType, ds) ?? "").split(separator: "\\").map { $0.trimmingSpaces().uppercased() }
        if policy.imageTypeContains.contains(where: { types.contains($0.uppercased()) }) { return true }
        return false
    }

    static func matches(_ signature: PixelSignature, _ ds: DataSet) -> Bool {
        signature.conditions.allSatisfy { c in
            let tag = Tag(c.tag.group, c.tag.element)
            guard ds.contains(tag) else { return false }
            let value = (Deidentifier.value(tag, ds) ?? "").trimmingSpaces().uppercased()
            let want = c.value.uppercased()
            switch c.operation {
            case .present: return true
            case .equals: return value == want
            case .contains: return value.contains(want)
            case .startsWith: return value.hasPrefix(want)
            }
        }
    }
}

enum PixelBlanker {
    /// Decodes every frame, sets the regions to 0 in every frame and sample, and writes the pixels back
    /// uncompressed (the caller writes the file as explicit VR little endian).
    static func blank(_ file: DicomFile, regions: [PixelRegion]) throws {
        let px: PixelData
        do { px = try file.decodePixels() } catch { throw DeidentificationError(.pixelBlankingFailed, detail: "pixels did not decode") }
        guard px.bitsAllocated >= 8, px.bytesPerSample * 8 == px.bitsAllocated || px.bitsAllocated == 8 else {
            throw DeidentificationError(.pixelBlankingFailed, detail: "bit depth not supported for blanking")
        }
        var bytes = px.bytes
        let rowStride = px.columns * px.samplesPerPixel * px.bytesPerSample
        let frameStride = rowStride * px.rows
        for f in 0..<px.frameCount {
            for r in regions {
                let x0 = max(0, r.x), y0 = max(0, r.y)
                let x1 = min(px.columns, r.x + r.width), y1 = min(px.rows, r.y + r.height)
                guard x0 < x1, y0 < y1 else { continue }
                let start = x0 * px.samplesPerPixel * px.bytesPerSample
                let end = x1 * px.samplesPerPixel * px.bytesPerSample
                for y in y0..<y1 {
                    let base = f * frameStride + y * rowStride
                    for i in (base + start)..<(base + end) { bytes[i] = 0 }
                }
            }
        }
        try file.storeNativePixels(px, bytes: bytes)
    }
}
