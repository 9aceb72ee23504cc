// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "swift-pst",
    // Linux only: the modules use Glibc, libmount, syncfs(2) and peer credentials.
    products: [
        .library(name: "PersistentStorage", targets: ["PersistentStorage"]),
        .library(name: "PersistentStorageMount", targets: ["PersistentStorageMount"]),
        .library(name: "PersistentStorageDaemon", targets: ["PersistentStorageDaemon"]),
        .executable(name: "kvmd-pst", targets: ["kvmd-pst"]),
        .executable(name: "kvmd-pstrun", targets: ["kvmd-pstrun"]),
        .executable(name: "kvmd-helper-pst-remount", targets: ["kvmd-helper-pst-remount"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // `make docs`: the DocC catalog of PersistentStorage (a plugin only; nothing links it).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // The only place that imports libmount's C API.
        .systemLibrary(
            name: "CLibMount",
            pkgConfig: "mount",
            providers: [.apt(["libmount-dev"])]
        ),
        // What Glibc does not export to Swift: peer credentials, terminal and process-group helpers.
        .target(name: "CSystemShims"),
        // The version the three executables print with --version, declared once.
        .target(name: "PersistentStorageVersion"),

        // Small system helpers: reading a configuration or /proc file safely (bounded,
        // never blocking), a thread of its own, a Unix socket address.
        .target(name: "SystemSupport", dependencies: ["CSystemShims"]),
        // The wire protocol both sides speak: events, the state answer, the
        // envelope, WebSocket framing and the handshake's pieces.
        .target(
            name: "PersistentStorageProtocol",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        // Log lines as kvmd writes them, one write(2) each, control characters escaped.
        .target(
            name: "KvmdLogging",
            dependencies: ["SystemSupport", .product(name: "Logging", package: "swift-log")]
        ),
        // kvmd's configuration tree (main.yaml, override.d, override.yaml) and its pst: section.
        .target(
            name: "KvmdConfiguration",
            dependencies: ["SystemSupport"]
        ),
        // The partition and the kernel: fstab discovery, mount state, remount, the fix step.
        .target(
            name: "PersistentStorageMount",
            dependencies: ["CLibMount", "CSystemShims", "SystemSupport"]
        ),
        // The client API (`withWritableStorage`).
        .target(
            name: "PersistentStorage",
            dependencies: [
                "PersistentStorageProtocol",
                "SystemSupport",
                "CSystemShims",
                // Types only: ByteBuffer and the WebSocket frame types that
                // PersistentStorageProtocol's frame coding takes and returns.
                // No event loop: the client is plain sockets and poll(2).
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The daemon: session registry, remount controller, HTTP + WebSocket server (its own request reader), metrics.
        .target(
            name: "PersistentStorageDaemon",
            dependencies: [
                "PersistentStorageProtocol",
                "PersistentStorageMount",
                "KvmdConfiguration",
                "KvmdLogging",
                "SystemSupport",
                "CSystemShims",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // What `kvmd-pstrun` does: run a script in its own process group while a session is held.
        .target(
            name: "PersistentStorageRun",
            dependencies: [
                "PersistentStorage",
                "PersistentStorageProtocol",
                "SystemSupport",
                "KvmdConfiguration",
                "CSystemShims",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Test support shared by every suite: a real ext4 image on a real loop device.
        .target(
            name: "PersistentStorageTestSupport",
            dependencies: ["PersistentStorage", "PersistentStorageProtocol", "PersistentStorageMount", "SystemSupport"]
        ),
        // The daemon test bed, which records test issues (Swift Testing): kept
        // apart so that the benchmark runner can use the fixture in release builds.
        .target(
            name: "PersistentStorageTestBed",
            dependencies: ["PersistentStorageTestSupport"]
        ),

        .executableTarget(
            name: "kvmd-helper-pst-remount",
            dependencies: [
                "PersistentStorageMount",
                "SystemSupport",
                "PersistentStorageVersion",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "kvmd-pst",
            dependencies: [
                "PersistentStorageDaemon",
                "KvmdLogging",
                "SystemSupport",
                "PersistentStorage",
                "PersistentStorageMount",
                "PersistentStorageVersion",
                "KvmdConfiguration",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "kvmd-pstrun",
            dependencies: [
                "PersistentStorageRun",
                "KvmdLogging",
                "SystemSupport",
                "PersistentStorageVersion",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Examples/SettingsService: keeps a JSON settings file in the PST with `withWritableStorage`.
        .executableTarget(
            name: "SettingsService",
            dependencies: ["PersistentStorage"],
            path: "Examples/SettingsService"
        ),

        // `make bench`: a real daemon on a real loop device, against the kernel's own costs.
        .executableTarget(
            name: "pst-bench",
            dependencies: [
                "PersistentStorage", "PersistentStorageMount", "PersistentStorageTestSupport", "SystemSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/pst-bench"
        ),

        .testTarget(
            name: "PersistentStorageMountTests",
            dependencies: ["PersistentStorageMount", "PersistentStorageTestSupport"]
        ),
        .testTarget(
            name: "PersistentStorageDaemonTests",
            dependencies: [
                "PersistentStorageDaemon", "PersistentStorage", "PersistentStorageProtocol", "PersistentStorageMount",
                "KvmdConfiguration", "KvmdLogging", "SystemSupport", "PersistentStorageTestSupport", "PersistentStorageTestBed",
            ]
        ),
        .testTarget(
            name: "PersistentStorageTests",
            dependencies: [
                "PersistentStorage", "PersistentStorageProtocol", "SystemSupport", "PersistentStorageTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "PersistentStorageRunTests",
            dependencies: ["PersistentStorageRun", "PersistentStorage", "PersistentStorageTestSupport", "KvmdConfiguration"]
        ),
        // Faults injected for real, hostile input, fuzzing and a soak (issue 7).
        .testTarget(
            name: "ReliabilityTests",
            dependencies: [
                "PersistentStorageDaemon", "PersistentStorage", "PersistentStorageProtocol", "PersistentStorageMount",
                "PersistentStorageTestSupport", "PersistentStorageTestBed",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Against the real kvmd 4.197 on its harness, both ways (`make test-kvmd`; disabled without it).
        .testTarget(
            name: "KvmdInteropTests",
            dependencies: ["PersistentStorage", "PersistentStorageTestSupport"]
        ),
        // Every example against a real daemon, the deployment files, and the docs against `--help`.
        .testTarget(
            name: "ExamplesTests",
            dependencies: ["PersistentStorageMount", "PersistentStorageTestSupport", "PersistentStorageDaemon", "PersistentStorageVersion"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
