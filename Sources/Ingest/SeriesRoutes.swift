// Series routing: which series go to which model (etl/routes.yaml), and so which normalisation
// recipes run on their instances and which inference jobs a complete series gets.
import CodedErrors
import Foundation
import Yams

/// Why a routes file cannot be used. Carries the route's position and the key, never file content.
public struct RoutesError: CodedError, Equatable {
    /// Machine-readable reason.
    public struct Code: ErrorCode {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The file cannot be read.
        public static let unreadable = Code(rawValue: "routes_unreadable")
        /// The file is not YAML of the expected shape.
        public static let malformed = Code(rawValue: "routes_malformed")
        /// A required key is missing or empty.
        public static let missingKey = Code(rawValue: "routes_missing_key")
        /// A value has the wrong type or range.
        public static let invalidValue = Code(rawValue: "routes_invalid_value")
        /// Two routes share a name, or send the same model version twice for the same match.
        public static let duplicateRoute = Code(rawValue: "routes_duplicate_route")
    }

    public let code: Code
    /// Index of the offending route (0-based), when the fault is inside one.
    public let routeIndex: Int?
    /// The offending key, when known.
    public let key: String?

    public init(_ code: Code, routeIndex: Int? = nil, key: String? = nil) {
        self.code = code
        self.routeIndex = routeIndex
        self.key = key
    }

    public var description: String {
        var text = "routes file rejected: \(code.rawValue)"
        if let routeIndex { text += " (route \(routeIndex)" + (key.map { ", key \($0)" } ?? "") + ")" }
        else if let key { text += " (key \(key))" }
        return text
    }
}

/// One route: series of these modalities (and body parts) are normalised with `recipe` and, once
/// complete, queued for `model` at `modelVersion`.
public struct SeriesRoute: Sendable, Hashable, Codable {
    /// Short identifier.
    public var name: String
    /// Modality values that match, upper-cased.
    public var modalities: Set<String>
    /// BodyPartExamined values that match, upper-cased; nil accepts any. A series without the
    /// attribute matches either way.
    public var bodyParts: Set<String>?
    /// Normalisation recipe name (`etl/normalize/<recipe>.yaml`).
    public var recipe: String
    /// Model name.
    public var model: String
    /// Model version.
    public var modelVersion: String
    /// Quiet period after which a series of this route is complete; nil: the daemon's default.
    public var quietPeriod: Duration?

    public init(
        name: String, modalities: Set<String>, bodyParts: Set<String>? = nil, recipe: String, model: String, modelVersion: String,
        quietPeriod: Duration? = nil
    ) {
        self.name = name
        self.modalities = Set(modalities.map { $0.uppercased() })
        self.bodyParts = bodyParts.map { Set($0.map { $0.uppercased() }) }
        self.recipe = recipe
        self.model = model
        self.modelVersion = modelVersion
        self.quietPeriod = quietPeriod
    }

    /// Whether a series with this Modality and BodyPartExamined (nil or empty: absent) takes this route.
    public func matches(modality: String?, bodyPart: String?) -> Bool {
        matches(normalizedModality: modality.map(Self.normalized), normalizedBodyPart: Self.normalized(bodyPart ?? ""))
    }

    /// `matches` with both values already trimmed and upper-cased.
    func matches(normalizedModality modality: String?, normalizedBodyPart part: String) -> Bool {
        guard let modality, modalities.contains(modality) else { return false }
        guard let bodyParts else { return true }
        return part.isEmpty || bodyParts.contains(part)
    }

    static func normalized(_ value: String) -> String { value.trimmingCharacters(in: .whitespaces).uppercased() }
}

/// The routes of `etl/routes.yaml`, in file order.
public struct SeriesRoutes: Sendable, Hashable, Codable {
    /// Every route, in file order.
    public var routes: [SeriesRoute]

    public init(routes: [SeriesRoute]) {
        self.routes = routes
    }

    /// The routes a series takes, in file order (several models may want the same series).
    public func routes(modality: String?, bodyPart: String?) -> [SeriesRoute] {
        let modality = modality.map(SeriesRoute.normalized), part = SeriesRoute.normalized(bodyPart ?? "")
        return routes.filter { $0.matches(normalizedModality: modality, normalizedBodyPart: part) }
    }

    /// The distinct recipes to run on an instance of a series with this Modality and BodyPartExamined.
    public func recipes(modality: String?, bodyPart: String?) -> [String] {
        var seen = Set<String>()
        return routes(modality: modality, bodyPart: bodyPart).map(\.recipe).filter { seen.insert($0).inserted }
    }

    /// The route of this name.
    public func route(named name: String) -> SeriesRoute? {
        routes.first { $0.name == name }
    }

    /// Reads a routes file.
    public static func load(path: String) throws -> SeriesRoutes {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw RoutesError(.unreadable)
        }
        return try parse(yaml: text)
    }

    /// Parses the YAML text of a routes file.
    public static func parse(yaml: String) throws -> SeriesRoutes {
        let loaded: Any?
        do { loaded = try Yams.load(yaml: yaml) } catch { throw RoutesError(.malformed) }
        guard let top = loaded as? [String: Any] else { throw RoutesError(.malformed) }
        if let unknown = top.keys.first(where: { $0 != "routes" }) { throw RoutesError(.invalidValue, key: unknown) }
        guard let list = top["routes"] as? [Any] else { throw RoutesError(.missingKey, key: "routes") }
        var routes: [SeriesRoute] = []
        for (index, entry) in list.enumerated() {
            guard let map = entry as? [String: Any] else { throw RoutesError(.malformed, routeIndex: index) }
            let known: Set<String> = ["name", "modalities", "body_parts", "recipe", "model", "model_version", "quiet_seconds"]
            if let unknown = map.keys.sorted().first(where: { !known.contains($0) }) {
                throw RoutesError(.invalidValue, routeIndex: index, key: unknown)
            }
            func string(_ key: String) throws -> String {
                guard let raw = map[key] else { throw RoutesError(.missingKey, routeIndex: index, key: key) }
                let value = "\(raw)".trimmingCharacters(in: .whitespaces)
                guard raw is String || raw is Int || raw is Double, !value.isEmpty else {
                    throw RoutesError(.invalidValue, routeIndex: index, key: key)
                }
                return value
            }
            func strings(_ key: String) throws -> Set<String>? {
                guard let raw = map[key] else { return nil }
                guard let values = raw as? [Any], !values.isEmpty, values.allSatisfy({ $0 is String }) else {
                    throw RoutesError(.invalidValue, routeIndex: index, key: key)
                }
                return Set(values.map { ($0 as! String).trimmingCharacters(in: .whitespaces).uppercased() })
            }
            guard let modalities = try strings("modalities") else { throw RoutesError(.missingKey, routeIndex: index, key: "modalities") }
            var quiet: Duration?
            if let raw = map["quiet_seconds"] {
                let seconds: Double
                switch raw {
                case let value as Int: seconds = Double(value)
                case let value as Double: seconds = value
                default: throw RoutesError(.invalidValue, routeIndex: index, key: "quiet_seconds")
                }
                guard seconds.isFinite, seconds >= 0 else { throw RoutesError(.invalidValue, routeIndex: index, key: "quiet_seconds") }
                quiet = .milliseconds(Int64((seconds * 1000).rounded()))
            }
            let route = SeriesRoute(
                name: try string("name"), modalities: modalities, bodyParts: try strings("body_parts"), recipe: try string("recipe"),
                model: try string("model"), modelVersion: try string("model_version"), quietPeriod: quiet)
            if routes.contains(where: { $0.name == route.name }) { throw RoutesError(.duplicateRoute, routeIndex: index, key: "name") }
            routes.append(route)
        }
        return SeriesRoutes(routes: routes)
    }

    /// The quiet period of a series taking `routes`: the longest of theirs (a route without one uses
    /// `defaultQuietPeriod`), so that no routed model receives a series its route considers open.
    public static func quietPeriod(of routes: [SeriesRoute], default defaultQuietPeriod: Duration) -> Duration {
        routes.map { $0.quietPeriod ?? defaultQuietPeriod }.max() ?? defaultQuietPeriod
    }
}
