// Plain sockets to the servers a test starts on 127.0.0.1, and the DCMTK storescu option for a transfer syntax.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A TCP connection to `127.0.0.1:port`; the caller closes the descriptor.
/// - Throws: `ECONNREFUSED` when nothing listens there (the socket is closed then).
public func connectToLoopback(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(fd)
        throw POSIXError(.ECONNREFUSED)
    }
    return fd
}

/// storescu proposes one compressed transfer syntax per run (`-x…`), so files are sent in groups by their
/// syntax, each group with the option that proposes it; `nil` for a syntax storescu cannot propose as is.
public func storescuOption(transferSyntax: String) -> String?? {
    switch transferSyntax {
    case "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2": return .some(nil)
    case "1.2.840.10008.1.2.1.99": return "-xd"
    case "1.2.840.10008.1.2.4.50": return "-xy"
    case "1.2.840.10008.1.2.4.51": return "-xx"
    case "1.2.840.10008.1.2.4.70": return "-xs"
    case "1.2.840.10008.1.2.4.80": return "-xt"
    case "1.2.840.10008.1.2.4.81": return "-xu"
    case "1.2.840.10008.1.2.4.90": return "-xv"
    case "1.2.840.10008.1.2.4.91": return "-xw"
    case "1.2.840.10008.1.2.5": return "-xr"
    default: return nil
    }
}
