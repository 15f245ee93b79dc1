// Streaming enumeration of a directory tree with opendir/readdir: one path at a time, so a backlog
// of 100,000 files is never held in memory. Directories are reported before their contents are read,
// so the caller can add a watch first and no file slips between listing and watching.
#if canImport(Glibc)
import Glibc
#endif

/// Walks a tree depth-first, yielding each directory (before reading it) and each regular file.
/// Symbolic links are not followed; directories for which `descend` returns false are skipped.
final class DirectoryWalker: IteratorProtocol, Sequence {
    enum Entry: Equatable {
        case directory(String)
        case file(String)
    }

    private var directories: [String]
    private var open: (path: String, handle: OpaquePointer)?
    private let descend: (String) -> Bool

    /// - Parameters:
    ///   - root: the directory to walk (reported first, when it exists).
    ///   - descend: called with each subdirectory's path; false skips it.
    init(root: String, descend: @escaping (String) -> Bool) {
        directories = [root]
        self.descend = descend
    }

    deinit {
        if let open { closedir(open.handle) }
    }

    func next() -> Entry? {
        while true {
            if let current = open {
                guard let entry = readdir(current.handle) else {
                    closedir(current.handle)
                    open = nil
                    continue
                }
                let name = withUnsafePointer(to: &entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                if name == "." || name == ".." { continue }
                let path = current.path == "/" ? "/" + name : current.path + "/" + name
                var type = Int32(entry.pointee.d_type)
                if type == Int32(DT_UNKNOWN) {
                    var info = stat()
                    guard lstat(path, &info) == 0 else { continue }
                    switch info.st_mode & S_IFMT {
                    case S_IFDIR: type = Int32(DT_DIR)
                    case S_IFREG: type = Int32(DT_REG)
                    default: continue
                    }
                }
                if type == Int32(DT_DIR) {
                    if descend(path) { directories.append(path) }
                    continue
                }
                if type == Int32(DT_REG) { return .file(path) }
                continue
            }
            guard let directory = directories.popLast() else { return nil }
            guard let handle = opendir(directory) else { continue }
            open = (directory, handle)
            return .directory(directory)
        }
    }
}
