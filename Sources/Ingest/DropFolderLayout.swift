// Which files of the drop folder are candidates, and where processed and quarantined files go.

/// The drop folder's layout and its ignore rules.
public struct DropFolderLayout: Sendable, Equatable {
    /// Absolute (or working-directory-relative) path of the drop folder, without a trailing slash.
    public let root: String
    /// Name of the subfolder ingested files are moved to.
    public static let processedFolder = "processed"
    /// Name of the subfolder rejected files are moved to.
    public static let quarantineFolder = "quarantine"
    /// File name suffixes of files still being written by their producer.
    public var temporarySuffixes: [String] = [".part", ".tmp", ".partial", ".filepart", ".crdownload", "~"]

    public init(root: String) {
        var root = root
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        self.root = root
    }

    /// `root/processed`.
    public var processedRoot: String { root + "/" + Self.processedFolder }
    /// `root/quarantine`.
    public var quarantineRoot: String { root + "/" + Self.quarantineFolder }

    /// True when a file with this name is never taken: dotfiles and temporary names.
    public func isIgnoredFileName(_ name: String) -> Bool {
        if name.isEmpty || name.hasPrefix(".") { return true }
        let lower = name.lowercased()
        return temporarySuffixes.contains { lower.hasSuffix($0) }
    }

    /// True when the directory at `relativePath` (relative to the root, no leading slash) is not scanned:
    /// the daemon's own `processed/` and `quarantine/` at the top level, and hidden directories anywhere.
    public func isExcludedDirectory(relativePath: String) -> Bool {
        let components = relativePath.split(separator: "/")
        guard let first = components.first else { return false }
        if components.contains(where: { $0.hasPrefix(".") }) { return true }
        return first == Self.processedFolder || first == Self.quarantineFolder
    }

    /// The path relative to the root, or nil when `path` is not inside the root.
    public func relativePath(of path: String) -> String? {
        guard path.hasPrefix(root + "/") else { return nil }
        return String(path.dropFirst(root.count + 1))
    }

    /// True when the file at `path` should be considered: inside the root, not in an excluded directory,
    /// not a temporary or hidden name.
    public func isCandidate(path: String) -> Bool {
        guard let relative = relativePath(of: path), !relative.isEmpty else { return false }
        let components = relative.split(separator: "/", omittingEmptySubsequences: false)
        guard let name = components.last, !isIgnoredFileName(String(name)) else { return false }
        if components.count > 1 && isExcludedDirectory(relativePath: components.dropLast().joined(separator: "/")) { return false }
        return true
    }
}
