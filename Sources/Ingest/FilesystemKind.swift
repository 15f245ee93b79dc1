// What kind of filesystem a folder is on: a network filesystem delivers no inotify events for other hosts'
// writes, and its events cannot be trusted to mean "completely written", so the stability timer is used there.
import CLinux
#if canImport(Glibc)
import Glibc
#endif

enum FilesystemKind {
    /// `statfs` magic numbers of network and userspace filesystems (linux/magic.h).
    static let networked: Set<Int> = [
        0x6969,         // NFS
        0x517B,         // SMB
        0xFF53_4D42,    // CIFS
        0xFE53_4D42,    // SMB2
        0x6573_5546,    // FUSE (sshfs, s3fs, …)
        0x0102_1997,    // 9P
        0x00C3_6400,    // Ceph
        0x5346_414F,    // AFS
        0x7375_7245,    // Coda
        0x564C,         // NCP
        0x0BD0_0BD0,    // Lustre
    ]

    /// True when `path` is on a network or userspace filesystem (false when it cannot be told).
    static func isNetworked(_ path: String) -> Bool {
        var info = statfs()
        guard statfs(path, &info) == 0 else { return false }
        return networked.contains(Int(UInt32(truncatingIfNeeded: info.f_type)))
    }
}
