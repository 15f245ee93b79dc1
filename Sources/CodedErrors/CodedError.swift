// The one shape of this project's errors: a struct with a machine-readable code (snake_case, stored in the
// database, in reason files and in metric labels) and a description that never carries patient data, paths
// or DICOM values.

/// A machine-readable reason, e.g. `not_dicom`. Its raw value is snake_case and stable: the database, the
/// quarantine reason files and the metric labels hold it.
///
/// Each error declares its codes as static members of a nested `Code` struct:
///
///     public struct Code: ErrorCode {
///         public let rawValue: String
///         public init(rawValue: String) { self.rawValue = rawValue }
///         /// The file is not DICOM.
///         public static let notDICOM = Code(rawValue: "not_dicom")
///     }
public protocol ErrorCode: RawRepresentable<String>, Hashable, Sendable, CustomStringConvertible {}

extension ErrorCode {
    /// The raw value, e.g. `not_dicom`.
    public var description: String { rawValue }
}

/// An error of this project: a `code`, optional context that is never patient data, and a description safe to
/// log. `reason` is what logs, reason files and the ledger record; it is the code unless the error forwards
/// another error's reason (a sandboxed job's failure).
public protocol CodedError: Error, Sendable, CustomStringConvertible {
    associatedtype Code: ErrorCode
    /// The machine-readable code.
    var code: Code { get }
    /// The machine-readable reason recorded for this error; by default the code's raw value.
    var reason: String { get }
}

extension CodedError {
    public var reason: String { code.rawValue }
}
