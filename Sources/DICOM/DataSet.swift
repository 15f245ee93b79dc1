// DataSet: reading and changing the elements of one dataset or sequence item.
import CDCMTK

/// One element's header.
public struct Element: Sendable, Hashable {
    public let tag: Tag
    public let vr: VR
    /// Value length in bytes as held (0xFFFFFFFF: undefined).
    public let length: UInt32
    public let multiplicity: Int
    public let isSequence: Bool
    public let itemCount: Int
    /// Pixel data held as compressed fragments.
    public let isEncapsulated: Bool

    init(_ info: dcmtk_element_info) {
        tag = Tag(info.group, info.element)
        vr = withUnsafeBytes(of: info.vr) { VR(String(decoding: $0.prefix(2), as: UTF8.self)) }
        length = info.length
        multiplicity = Int(info.multiplicity)
        isSequence = info.is_sequence != 0
        itemCount = Int(info.item_count)
        isEncapsulated = info.is_encapsulated != 0
    }
}

/// A view of one dataset or sequence item inside a `DicomFile`; it keeps the file alive.
/// Changes write through to the file. Removing a sequence invalidates views of its items.
public struct DataSet {
    public let file: DicomFile
    let item: OpaquePointer?

    init(file: DicomFile, item: OpaquePointer?) {
        self.file = file
        self.item = item
    }

    // MARK: Reading

    /// The elements of this level, in tag order.
    public var elements: [Element] {
        guard let item else { return [] }
        let count = dcmtk_item_count(item)
        guard count > 0 else { return [] }
        var infos = [dcmtk_element_info](repeating: dcmtk_element_info(), count: count)
        let filled = infos.withUnsafeMutableBufferPointer { dcmtk_item_elements(item, $0.baseAddress, count) }
        return infos.prefix(filled).map(Element.init)
    }

    public func element(_ tag: Tag) -> Element? {
        guard let item else { return nil }
        var info = dcmtk_element_info()
        guard dcmtk_item_element_info(item, tag.group, tag.element, &info) == DCMTK_OK else { return nil }
        return Element(info)
    }

    public func contains(_ tag: Tag) -> Bool { element(tag) != nil }

    /// The whole value as text, values joined by "\", padding trimmed. Nil when absent or not text-like.
    public func string(_ tag: Tag) -> String? {
        guard let raw = rawString(tag) else { return nil }
        return raw.trimmingPadding()
    }

    /// The value as stored (with padding), decoded as UTF-8 (invalid bytes replaced).
    public func rawString(_ tag: Tag) -> String? {
        guard let item else { return nil }
        var out: UnsafeMutablePointer<CChar>?
        var length = 0
        guard dcmtk_item_get_string(item, tag.group, tag.element, &out, &length) == DCMTK_OK else { return nil }
        defer { dcmtk_free(out) }
        guard let out else { return "" }
        return out.withMemoryRebound(to: UInt8.self, capacity: length) {
            String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
        }
    }

    /// The values split on "\", each trimmed.
    public func strings(_ tag: Tag) -> [String] {
        guard let raw = rawString(tag), !raw.isEmpty else { return [] }
        guard raw.utf8.contains(0x5C) else { return [raw.trimmingPadding()] }
        return raw.split(separator: "\\", omittingEmptySubsequences: false).map { String($0).trimmingPadding() }
    }

    /// Integer values of any integer VR, IS, or numbers truncated.
    public func integers(_ tag: Tag) -> [Int] {
        guard let item else { return [] }
        var count = 0
        guard dcmtk_item_get_int64s(item, tag.group, tag.element, nil, 0, &count) == DCMTK_OK, count > 0 else { return [] }
        var values = [Int64](repeating: 0, count: count)
        guard dcmtk_item_get_int64s(item, tag.group, tag.element, &values, count, &count) == DCMTK_OK else { return [] }
        return values.prefix(count).map { Int($0) }
    }

    public func integer(_ tag: Tag) -> Int? { integers(tag).first }

    /// Numbers of any numeric VR, DS or IS.
    public func doubles(_ tag: Tag) -> [Double] {
        guard let item else { return [] }
        var count = 0
        guard dcmtk_item_get_doubles(item, tag.group, tag.element, nil, 0, &count) == DCMTK_OK, count > 0 else { return [] }
        var values = [Double](repeating: 0, count: count)
        guard dcmtk_item_get_doubles(item, tag.group, tag.element, &values, count, &count) == DCMTK_OK else { return [] }
        return Array(values.prefix(count))
    }

    public func double(_ tag: Tag) -> Double? { doubles(tag).first }

    /// Attribute tag (AT) values.
    public func tags(_ tag: Tag) -> [Tag] {
        guard let item else { return [] }
        var count = 0
        guard dcmtk_item_get_tags(item, tag.group, tag.element, nil, 0, &count) == DCMTK_OK, count > 0 else { return [] }
        var values = [UInt32](repeating: 0, count: count)
        guard dcmtk_item_get_tags(item, tag.group, tag.element, &values, count, &count) == DCMTK_OK else { return [] }
        return values.prefix(count).map { Tag($0) }
    }

    /// The value bytes as held (binary numbers little endian). Nil when absent.
    public func bytes(_ tag: Tag) -> [UInt8]? {
        guard let item else { return nil }
        var out: UnsafePointer<UInt8>?
        var length = 0
        guard dcmtk_item_get_bytes(item, tag.group, tag.element, &out, &length) == DCMTK_OK else { return nil }
        guard let out else { return [] }
        return [UInt8](UnsafeBufferPointer(start: out, count: length))
    }

    /// The items of a sequence.
    public func items(_ tag: Tag) -> [DataSet] {
        guard let item, let element = element(tag), element.isSequence else { return [] }
        return (0..<element.itemCount).compactMap { index in
            dcmtk_item_sequence_item(item, tag.group, tag.element, index).map { DataSet(file: file, item: $0) }
        }
    }

    // MARK: Changing

    /// Sets a text value (`vr` nil: the dictionary's VR, UN for unknown tags).
    public func set(_ tag: Tag, string: String, vr: VR? = nil) throws {
        let item = try requireItem()
        var utf8 = Array(string.utf8)
        try utf8.withUnsafeMutableBufferPointer { buffer throws(DicomError) in
            try buffer.withMemoryRebound(to: CChar.self) { chars throws(DicomError) in
                try check(dcmtk_item_put_string(item, tag.group, tag.element, vr?.rawValue, chars.baseAddress, chars.count), context: tag.description)
            }
        }
    }

    /// Sets several text values, joined by "\".
    public func set(_ tag: Tag, strings: [String], vr: VR? = nil) throws {
        try set(tag, string: strings.joined(separator: "\\"), vr: vr)
    }

    /// Sets numbers (US SS UL SL FL FD SV UV, or DS/IS rendered as text).
    public func set(_ tag: Tag, numbers: [Double], vr: VR? = nil) throws {
        let item = try requireItem()
        try check(dcmtk_item_put_doubles(item, tag.group, tag.element, vr?.rawValue, numbers, numbers.count), context: tag.description)
    }

    /// Sets raw value bytes (little endian for binary numbers).
    public func set(_ tag: Tag, bytes: [UInt8], vr: VR? = nil) throws {
        let item = try requireItem()
        try check(dcmtk_item_put_bytes(item, tag.group, tag.element, vr?.rawValue, bytes, bytes.count), context: tag.description)
    }

    /// Sets attribute tag (AT) values.
    public func set(_ tag: Tag, tags: [Tag]) throws {
        let item = try requireItem()
        try check(dcmtk_item_put_tags(item, tag.group, tag.element, tags.map(\.combined), tags.count), context: tag.description)
    }

    /// A zero-length value; an empty sequence for SQ.
    public func setEmpty(_ tag: Tag, vr: VR? = nil) throws {
        let item = try requireItem()
        try check(dcmtk_item_put_empty(item, tag.group, tag.element, vr?.rawValue), context: tag.description)
    }

    /// Removes the element and everything under it. Returns false when it was absent.
    @discardableResult
    public func remove(_ tag: Tag) throws -> Bool {
        let item = try requireItem()
        let status = dcmtk_item_remove(item, tag.group, tag.element)
        if status == DCMTK_NOT_FOUND { return false }
        try check(status, context: tag.description)
        return true
    }

    /// Appends an empty item to a sequence (created when absent) and returns it.
    public func appendItem(to sequence: Tag) throws -> DataSet {
        let item = try requireItem()
        guard let created = dcmtk_item_sequence_append(item, sequence.group, sequence.element) else {
            throw DicomError(.wrongType, context: sequence.description)
        }
        return DataSet(file: file, item: created)
    }

    // MARK: Walking

    /// Depth-first over every element, into sequence items.
    /// `path` lists the enclosing (sequence tag, item index) pairs, outermost first.
    public func walk(_ visit: (_ path: [(Tag, Int)], _ element: Element, _ owner: DataSet) throws -> Void) rethrows {
        try walk(path: [], visit)
    }

    private func walk(path: [(Tag, Int)], _ visit: (_ path: [(Tag, Int)], _ element: Element, _ owner: DataSet) throws -> Void) rethrows {
        for element in elements {
            try visit(path, element, self)
            if element.isSequence {
                for (index, child) in items(element.tag).enumerated() {
                    try child.walk(path: path + [(element.tag, index)], visit)
                }
            }
        }
    }

    private func requireItem() throws(DicomError) -> OpaquePointer {
        guard let item else { throw DicomError(.invalidArgument) }
        return item
    }
}
