// StorageURL: the one string that says where objects go: `file:///path` or
// `s3://bucket/prefix?endpoint=https://host:port&region=…&addressing=path|virtual&ca_bundle=/ca.pem`.
import AsyncHTTPClient
import Foundation

/// A parsed storage URL.
public enum StorageLocation: Sendable, Hashable {
    /// A folder for `FilesystemObjectStore`.
    case filesystem(root: String)
    /// A bucket for `S3ObjectStore`.
    case s3(S3Configuration)

    /// Parses `file:///absolute/path` or `s3://bucket[/prefix]?endpoint=…&region=…&addressing=path|virtual`
    /// `&ca_bundle=/path/ca.pem` (the CAs trusted for an `https://` endpoint, instead of the system's roots).
    /// A non-empty S3 prefix gets a trailing `/`.
    public static func parse(_ text: String) throws -> StorageLocation {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw ObjectStoreError(.invalidStorageURL)
        }
        switch scheme {
        case "file":
            let path = components.percentEncodedPath.removingPercentEncoding ?? components.path
            guard path.hasPrefix("/"), components.host == nil || components.host == "" || components.host == "localhost"
            else { throw ObjectStoreError(.invalidStorageURL) }
            return .filesystem(root: path)
        case "s3":
            guard let bucket = components.host, !bucket.isEmpty else { throw ObjectStoreError(.invalidStorageURL) }
            var prefix = components.path
            while prefix.hasPrefix("/") { prefix.removeFirst() }
            if !prefix.isEmpty && !prefix.hasSuffix("/") { prefix += "/" }
            var configuration = S3Configuration(bucket: bucket, prefix: prefix)
            for item in components.queryItems ?? [] {
                let value = item.value ?? ""
                switch item.name.lowercased() {
                case "endpoint":
                    configuration.endpoint = value
                    configuration.addressing = .path  // self-hosted servers: path-style unless told otherwise
                case "region": configuration.region = value
                case "ca_bundle": configuration.caBundle = value.isEmpty ? nil : value
                default: break
                }
            }
            if let addressing = components.queryItems?.first(where: { $0.name.lowercased() == "addressing" })?.value {
                guard let parsed = S3Configuration.Addressing(rawValue: addressing == "virtual-hosted" ? "virtual" : addressing)
                else { throw ObjectStoreError(.invalidStorageURL) }
                configuration.addressing = parsed
            }
            return .s3(configuration)
        default:
            throw ObjectStoreError(.invalidStorageURL)
        }
    }

    /// Opens the store this location names.
    /// - Parameters:
    ///   - credentials: for S3; from the environment when nil.
    ///   - httpClient: for S3; `HTTPClient.shared` by default.
    public func makeStore(credentials: AWSCredentials? = nil, httpClient: HTTPClient = .shared) throws -> any ObjectStore {
        switch self {
        case .filesystem(let root):
            return try FilesystemObjectStore(root: URL(fileURLWithPath: root, isDirectory: true))
        case .s3(let configuration):
            return try S3ObjectStore(configuration: configuration, credentials: credentials, httpClient: httpClient)
        }
    }
}
