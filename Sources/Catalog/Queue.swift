// Queue types: job requests (the outbox rows the daemon writes with its catalog transaction), claimed
// jobs, diagnoses and models.
import Foundation

/// A model, by name and version.
public struct ModelRef: Sendable, Hashable, Codable {
    public var name: String
    public var version: String

    public init(name: String, version: String) {
        self.name = name
        self.version = version
    }
}

/// A model's registration row.
public struct ModelRecord: Sendable, Hashable {
    public var model: ModelRef
    /// The normalisation recipe its input contract names.
    public var inputRecipe: String
    public var classes: [String]
    public var threshold: Double?

    public init(model: ModelRef, inputRecipe: String, classes: [String], threshold: Double? = nil) {
        self.model = model
        self.inputRecipe = inputRecipe
        self.classes = classes
        self.threshold = threshold
    }
}

/// A job to enqueue: unique per (series, model name + version, series revision).
public struct JobRequest: Sendable, Hashable {
    public var seriesUID: String
    public var seriesRevision: Int
    public var model: ModelRef
    /// Attempts before the job is dead.
    public var maxAttempts: Int

    public init(seriesUID: String, seriesRevision: Int, model: ModelRef, maxAttempts: Int = 5) {
        self.seriesUID = seriesUID
        self.seriesRevision = seriesRevision
        self.model = model
        self.maxAttempts = maxAttempts
    }
}

/// Job states.
public enum JobState: String, Sendable, CaseIterable {
    case queued, running, done, dead
}

/// A job leased to one claimer. `leaseToken` identifies this claim: completing or failing with a token whose
/// lease was taken over by another claimer throws `CatalogError.leaseLost`.
public struct ClaimedJob: Sendable, Hashable {
    public var id: Int64
    public var seriesUID: String
    public var seriesRevision: Int
    public var model: ModelRef
    /// Attempts including this one.
    public var attempts: Int
    public var maxAttempts: Int
    public var leaseToken: UUID
    public var leaseUntil: Date
}

/// One diagnosis row.
public struct DiagnosisRecord: Sendable, Hashable {
    /// The job that produced it (nil for a result written outside the queue).
    public var jobID: Int64?
    public var seriesUID: String
    /// The instance, or nil for a series-level result.
    public var sopInstanceUID: String?
    public var model: ModelRef
    public var label: String
    /// Probability per class name.
    public var probabilities: [String: Double]
    public var threshold: Double?
    public var latencyMilliseconds: Double?
    /// Defaults to the transaction's time.
    public var createdAt: Date?

    public init(
        jobID: Int64? = nil, seriesUID: String, sopInstanceUID: String? = nil, model: ModelRef, label: String,
        probabilities: [String: Double], threshold: Double? = nil, latencyMilliseconds: Double? = nil,
        createdAt: Date? = nil
    ) {
        self.jobID = jobID
        self.seriesUID = seriesUID
        self.sopInstanceUID = sopInstanceUID
        self.model = model
        self.label = label
        self.probabilities = probabilities
        self.threshold = threshold
        self.latencyMilliseconds = latencyMilliseconds
        self.createdAt = createdAt
    }
}

/// What `fail` did with a job.
public enum JobFailureOutcome: Sendable, Hashable {
    /// Back in the queue, claimable after the backoff.
    case retrying(after: Duration)
    /// Out of attempts (or failed permanently).
    case dead
}

/// Exponential backoff for failed jobs: `base × multiplier^(attempts−1)`, capped at `maximum`.
public struct RetryPolicy: Sendable, Hashable {
    public var base: Duration
    public var multiplier: Double
    public var maximum: Duration

    public init(base: Duration = .seconds(10), multiplier: Double = 2, maximum: Duration = .seconds(3600)) {
        self.base = base
        self.multiplier = multiplier
        self.maximum = maximum
    }

    /// The delay before attempt `attempts + 1`, after `attempts` failures.
    public func delay(afterAttempts attempts: Int) -> Duration {
        let factor = pow(multiplier, Double(max(0, attempts - 1)))
        let seconds = min(base.seconds * factor, maximum.seconds)
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }
}

extension Duration {
    /// The duration in seconds as a floating-point number.
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}
