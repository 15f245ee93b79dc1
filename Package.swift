// swift-tools-version:6.1
// dicom-etl: DICOM drop folder → de-identified, normalised tensors, catalogued in PostgreSQL.
import PackageDescription

/// DCMTK 3.6.7 as packaged by Debian: only the libraries the shim uses, plus OpenJPEG for JPEG 2000.
let dcmtkLibraries: [LinkerSetting] = [
    "dcmimage", "dcmimgle", "dcmjpeg", "ijg8", "ijg12", "ijg16", "dcmjpls", "dcmtkcharls",
    "dcmdata", "oflog", "ofstd", "openjp2", "z",
].map { .linkedLibrary($0) }

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "dicom-etl",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "dicom-etl", targets: ["dicom-etl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // The HTTP server of `Serving`; swift-configuration support (a default trait) is left out.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: ["FullFoundation"]),
    ],
    targets: [
        // The only C++ in the project: an extern "C" facade over DCMTK and OpenJPEG.
        .target(
            name: "CDCMTK",
            cxxSettings: [.unsafeFlags(["-Wno-deprecated-declarations"])],
            linkerSettings: dcmtkLibraries
        ),
        // The one shape of the project's errors: `CodedError` and its snake_case `ErrorCode`s. Every target may use it.
        .target(name: "CodedErrors", swiftSettings: strict),
        .target(name: "DICOM", dependencies: ["CDCMTK", "CodedErrors"], swiftSettings: strict),
        // Tesseract 5 and Leptonica (Debian libtesseract-dev, libleptonica-dev) behind a tess_ C facade; optimised
        // even in debug builds, as the image preparation loops over every pixel.
        .target(
            name: "CTesseract",
            cSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("tesseract"), .linkedLibrary("lept"), .linkedLibrary("gomp")]
        ),
        // Text recognition in 8-bit grey images: engines (one per thread), glyph layers, words with boxes.
        .target(name: "OCR", dependencies: ["CTesseract", "CodedErrors"], swiftSettings: strict),
        // Reading secrets from files only their owner can read (key, passwords, S3 credentials, TLS keys).
        .target(name: "Secrets", dependencies: ["CodedErrors"], swiftSettings: strict),
        .target(
            name: "Deidentification",
            dependencies: [
                "CodedErrors", "DICOM", "OCR", "Secrets",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        // NumPy's .npy format: the one codec every target that writes or reads tensors uses.
        .target(name: "NPY", dependencies: ["CodedErrors"], swiftSettings: strict),
        // A string as a JSON string literal, for the catalogue's batch rows and the JSON log lines.
        .target(name: "JSONText", swiftSettings: strict),
        .target(
            name: "Normalization",
            dependencies: ["CodedErrors", "DICOM", "NPY", .product(name: "Yams", package: "Yams"), .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        // Linux calls Swift's Glibc module leaves out (xattrs, syncfs, statfs).
        .systemLibrary(name: "CLinux"),
        .target(
            name: "ObjectStorage",
            dependencies: [
                "CLinux",
                "CodedErrors",
                "Secrets",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Catalog",
            dependencies: [
                "CodedErrors",
                "Secrets",
                "JSONText",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // Network intake: the DICOM upper layer and C-STORE / C-ECHO on SwiftNIO, writing received instances
        // durably into the drop folder without parsing them.
        .target(
            name: "DicomNetwork",
            dependencies: [
                "CodedErrors",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Crash isolation: long-lived child processes that run untrusted parsing, batches in, answers streamed out.
        .target(name: "Sandbox", dependencies: ["CLinux", "CodedErrors", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas"),
        // The training loop's data side: TFRecord export of catalogued tensors, split by patient.
        .target(
            name: "Training",
            dependencies: ["Catalog", "CodedErrors", "ObjectStorage", "NPY", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        .target(
            name: "Inference",
            dependencies: [
                "COpenBLAS", "Catalog", "CodedErrors", "ObjectStorage", "NPY", .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // What every long-running command shares without the daemon: the operations HTTP server (/metrics, /healthz,
        // /readyz) and time limits for calls that may never return.
        .target(
            name: "Operations",
            dependencies: [
                "CodedErrors",
                "JSONText",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Ingest",
            dependencies: [
                "CodedErrors", "DICOM", "Deidentification", "Normalization", "ObjectStorage", "Catalog", "Sandbox", "CLinux", "DicomNetwork", "Operations",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        // The HTTP server: DICOMweb over the de-identified archive, the results API and page, tokens and audit.
        .target(
            name: "Serving",
            dependencies: [
                "CodedErrors", "DICOM", "Normalization", "NPY", "ObjectStorage", "Catalog", "DicomNetwork",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "dicom-etl",
            dependencies: [
                "CodedErrors", "DICOM", "Deidentification", "Normalization", "ObjectStorage", "Catalog", "Ingest", "Inference", "Operations", "Sandbox", "Training", "Serving", "DicomNetwork",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The Swift programs of bench/<name>/run.sh (each benchmark folder has that one entry point).
        .executableTarget(name: "inference-bench", dependencies: ["Inference", "COpenBLAS"],
                          path: "bench/inference", exclude: ["run.sh", "frameworks.py", "requirements.txt"], swiftSettings: strict),
        .executableTarget(name: "decode-bench", dependencies: ["DICOM"], path: "bench/decode", exclude: ["run.sh"], swiftSettings: strict),
        .executableTarget(name: "catalog-bench", dependencies: ["Catalog"], path: "bench/catalog", exclude: ["run.sh"], swiftSettings: strict),
        // What every test target needs to find its world: the package, the interpreter, the corpus, a free port.
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: strict),
        .testTarget(name: "DICOMTests", dependencies: ["DICOM", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "DeidentificationTests", dependencies: ["Deidentification", "DICOM", "OCR", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "NormalizationTests", dependencies: ["Normalization", "NPY", "DICOM", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "ObjectStorageTests", dependencies: ["ObjectStorage"], swiftSettings: strict),
        .testTarget(name: "CatalogTests", dependencies: ["Catalog"], swiftSettings: strict),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "NPY", "Catalog", "ObjectStorage"], swiftSettings: strict),
        .testTarget(name: "InferenceTests", dependencies: [
            "Inference", "TestSupport", "Catalog", "ObjectStorage", .product(name: "PostgresNIO", package: "postgres-nio"),
        ], swiftSettings: strict),
        // A sandbox worker whose jobs crash, hang or echo on purpose: the child process of the SandboxPool tests.
        .executableTarget(name: "sandbox-test-worker", dependencies: ["CodedErrors", "Ingest", "DICOM", "Sandbox"], path: "Tests/SandboxTestWorker", swiftSettings: strict),
        // Secret files, TLS to PostgreSQL and to S3, each against servers the tests start (openssl, moto).
        .testTarget(name: "SecurityTests", dependencies: [
            "Secrets", "TestSupport", "Catalog", "ObjectStorage", "Deidentification", .product(name: "PostgresNIO", package: "postgres-nio"),
        ], swiftSettings: strict),
        .testTarget(name: "ServingTests", dependencies: [
            "Serving", "NPY", "TestSupport", "Catalog", "DICOM", "ObjectStorage", .product(name: "HummingbirdCore", package: "hummingbird"),
        ], exclude: ["Scripts"], swiftSettings: strict),
        // The Storage SCP against real clients (DCMTK storescu/echoscu, pynetdicom) and a bounded fuzzer.
        .testTarget(name: "DicomNetworkTests", dependencies: [
            "DicomNetwork", "TestSupport", "DICOM", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"), .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        // The import rules of ARCHITECTURE.md, checked over Sources/ (no dependency: it reads the files).
        .testTarget(name: "ArchitectureTests", swiftSettings: strict),
        .testTarget(name: "OperationsTests", dependencies: ["Operations", "JSONText", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "IngestTests", dependencies: ["Ingest", "Catalog", "DICOM", "OCR", "ObjectStorage", "Operations", "Sandbox", "TestSupport", "sandbox-test-worker"], swiftSettings: strict),
    ],
    cxxLanguageStandard: .cxx17
)
