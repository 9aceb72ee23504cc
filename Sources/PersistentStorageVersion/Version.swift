/// The one declaration of swift-pst's version.
///
/// `kvmd-pst --version`, `kvmd-pstrun --version` and
/// `kvmd-helper-pst-remount --version` print it; `packaging/PKGBUILD`'s
/// `pkgver` and the newest released section of `CHANGELOG.md` must agree
/// with it, which `VersionTests` checks. Bump it here when you release.
public enum SwiftPSTVersion {
    /// Semantic Versioning, as the CHANGELOG.
    public static let string = "0.1.0"
}
