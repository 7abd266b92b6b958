//! Packages: a gzipped tar archive holding `fx.toml` and one WebAssembly component, addressed
//! by the SHA-256 of the archive's bytes.

use std::fmt;
use std::io::Read;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::limits::LimitOverrides;
use crate::validate::{validate_config, validate_name, validate_secret_names, HTTP_CAPABILITY};

/// The alias that follows the newest upload unless moved by hand.
pub const LATEST_ALIAS: &str = "latest";
/// The manifest's file name inside the archive.
pub const MANIFEST_FILE: &str = "fx.toml";
/// The component's default file name inside the archive.
pub const DEFAULT_COMPONENT_FILE: &str = "function.wasm";
/// The default cap on an uploaded archive.
pub const DEFAULT_MAX_PACKAGE_BYTES: u64 = 32 * 1024 * 1024;

/// SHA-256 of a package archive, as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PackageDigest(String);

impl PackageDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        PackageDigest(hex::encode(Sha256::digest(bytes)))
    }

    /// Parses 64 hex digits, with or without a `sha256:` prefix.
    pub fn parse(text: &str) -> Result<Self> {
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!(
                "package digest {text:?} is not 64 hex digits"
            )));
        }
        Ok(PackageDigest(hex.to_ascii_lowercase()))
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }

    /// Whether `bytes` hash to this digest.
    pub fn verify(&self, bytes: &[u8]) -> Result<()> {
        let actual = PackageDigest::of(bytes);
        if &actual != self {
            return Err(Error::invalid(format!(
                "package bytes do not match their digest: expected {}, got {}",
                self.0, actual.0
            )));
        }
        Ok(())
    }
}

impl fmt::Display for PackageDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PackageDigest {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        PackageDigest::parse(&value)
    }
}

impl From<PackageDigest> for String {
    fn from(value: PackageDigest) -> Self {
        value.0
    }
}

/// The manifest, `fx.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Package name: lowercase letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Version; starts with a digit (`1.0.0`), so that it never reads as an alias.
    pub version: String,
    /// What the function does.
    #[serde(default)]
    pub description: String,
    /// The component's file name in the archive.
    #[serde(default = "default_component")]
    pub component: String,
    /// Default limits for handlers running this package.
    #[serde(default, skip_serializing_if = "LimitOverrides::is_empty")]
    pub limits: LimitOverrides,
    /// Capabilities beyond logging, emitting and configuration that the function needs; a
    /// handler still has to grant each. Known: `wasi:http` (outbound HTTP to the hosts the
    /// handler's `http_allow` lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Default configuration values (`[config]`); a handler's `config` overrides them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub config: std::collections::BTreeMap<String, String>,
    /// The secrets the function may ask for. A handler grants each by name; the executor holds
    /// the values.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub secrets: std::collections::BTreeSet<String>,
}

fn default_component() -> String {
    DEFAULT_COMPONENT_FILE.to_string()
}

impl Manifest {
    /// Whether the manifest declares `capability`.
    pub fn declares(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    /// Parses and validates `fx.toml`.
    pub fn parse(text: &str) -> Result<Self> {
        let manifest: Manifest = toml::from_str(text)
            .map_err(|e| Error::invalid(format!("fx.toml is not a valid manifest: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks the name, version and limits.
    pub fn validate(&self) -> Result<()> {
        validate_name("package name", &self.name)?;
        validate_version(&self.version)?;
        if self.component.is_empty() || self.component.contains("..") {
            return Err(Error::invalid(format!(
                "manifest component path {:?} is not a plain file name",
                self.component
            )));
        }
        self.limits.validate()?;
        validate_config("fx.toml [config]", &self.config)?;
        validate_secret_names("fx.toml secrets", &self.secrets)?;
        if let Some(unknown) = self
            .capabilities
            .iter()
            .find(|c| c.as_str() != HTTP_CAPABILITY)
        {
            return Err(Error::invalid(format!(
                "fx.toml capabilities: {unknown:?} is not a capability FerrisFX offers (known: {})",
                HTTP_CAPABILITY
            )));
        }
        Ok(())
    }
}

/// Checks a version: starts with a digit, then letters, digits, `.`, `-`, `+`; at most 64.
pub fn validate_version(version: &str) -> Result<()> {
    let ok = version.len() <= 64
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    if !ok {
        return Err(Error::invalid(format!(
            "package version {version:?} must start with a digit and use letters, digits, '.', '-', '+' (e.g. 1.0.0)"
        )));
    }
    Ok(())
}

/// The order of two package versions, as `latest` follows it: build metadata (`+…`) aside,
/// dot-separated parts compare as numbers when both are numbers, else as text; a release comes
/// after its pre-releases (`1.0.0-rc.1` < `1.0.0`); more parts come later (`1.0` < `1.0.1`).
/// Versions equal in this order but spelled differently compare by their text, so the order
/// is total.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn split(v: &str) -> (&str, Option<&str>) {
        let v = v.split('+').next().unwrap_or(v);
        match v.split_once('-') {
            Some((release, pre)) => (release, Some(pre)),
            None => (v, None),
        }
    }
    fn parts(a: &str, b: &str) -> Ordering {
        let mut left = a.split('.');
        let mut right = b.split('.');
        loop {
            match (left.next(), right.next()) {
                (None, None) => return Ordering::Equal,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
                (Some(x), Some(y)) => {
                    let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                        (Ok(x), Ok(y)) => x.cmp(&y),
                        (Ok(_), Err(_)) => Ordering::Less,
                        (Err(_), Ok(_)) => Ordering::Greater,
                        (Err(_), Err(_)) => x.cmp(y),
                    };
                    if order != Ordering::Equal {
                        return order;
                    }
                }
            }
        }
    }
    let ((ra, pa), (rb, pb)) = (split(a), split(b));
    parts(ra, rb)
        .then_with(|| match (pa, pb) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => parts(x, y),
        })
        .then_with(|| a.cmp(b))
}

/// Checks an alias name: starts with a lowercase letter, so that it never reads as a version.
pub fn validate_alias(alias: &str) -> Result<()> {
    validate_name("alias", alias)?;
    if !alias.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(Error::invalid(format!(
            "alias {alias:?} must start with a letter (versions start with a digit)"
        )));
    }
    Ok(())
}

/// A parsed, validated package archive.
#[derive(Debug, Clone)]
pub struct PackageArchive {
    /// The manifest.
    pub manifest: Manifest,
    /// The component's bytes.
    pub component: Vec<u8>,
    /// Digest of the whole archive.
    pub digest: PackageDigest,
    /// Size of the whole archive in bytes.
    pub size: u64,
}

impl PackageArchive {
    /// Parses and validates an archive: size, gzip/tar structure, manifest, and that the
    /// component is a valid WebAssembly component (not a core module).
    pub fn parse(bytes: &[u8], max_bytes: u64) -> Result<Self> {
        if bytes.len() as u64 > max_bytes {
            return Err(Error::invalid(format!(
                "package is {} bytes, over the limit of {max_bytes} bytes",
                bytes.len()
            )));
        }
        let files = read_archive(bytes, max_bytes)?;
        let manifest_bytes = files
            .iter()
            .find(|(name, _)| name == MANIFEST_FILE)
            .map(|(_, b)| b)
            .ok_or_else(|| Error::invalid("package has no fx.toml manifest at its top level"))?;
        let text = std::str::from_utf8(manifest_bytes)
            .map_err(|_| Error::invalid("fx.toml is not utf-8"))?;
        let manifest = Manifest::parse(text)?;
        let component = files
            .into_iter()
            .find(|(name, _)| name == &manifest.component)
            .map(|(_, b)| b)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "package has no component file {:?} (named by fx.toml)",
                    manifest.component
                ))
            })?;
        validate_component(&component)?;
        Ok(PackageArchive {
            manifest,
            component,
            digest: PackageDigest::of(bytes),
            size: bytes.len() as u64,
        })
    }

    /// Extracts just the component from archive bytes already validated once (executor side).
    pub fn component_of(bytes: &[u8]) -> Result<(Manifest, Vec<u8>)> {
        let archive = PackageArchive::parse(bytes, u64::MAX)?;
        Ok((archive.manifest, archive.component))
    }

    /// Builds an archive from a manifest and a component; the inverse of [`PackageArchive::parse`].
    pub fn build(manifest: &Manifest, component: &[u8]) -> Result<Vec<u8>> {
        let toml = toml::to_string(manifest)
            .map_err(|e| Error::internal("encoding fx.toml").with_source(e))?;
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        append(&mut tar, MANIFEST_FILE, toml.as_bytes())?;
        append(&mut tar, &manifest.component, component)?;
        let gz = tar
            .into_inner()
            .map_err(|e| Error::internal("writing package archive").with_source(e))?;
        gz.finish()
            .map_err(|e| Error::internal("compressing package archive").with_source(e))
    }
}

fn append<W: std::io::Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, name, bytes)
        .map_err(|e| Error::internal(format!("adding {name} to package archive")).with_source(e))
}

fn read_archive(bytes: &[u8], max_bytes: u64) -> Result<Vec<(String, Vec<u8>)>> {
    // Cap what decompression may produce so that a small gzip bomb cannot exhaust memory.
    let cap = max_bytes.saturating_mul(4).max(1024 * 1024);
    let gz = flate2::read::GzDecoder::new(bytes).take(cap);
    let mut tar = tar::Archive::new(gz);
    let entries = tar.entries().map_err(|e| {
        Error::invalid("package is not a gzipped tar archive (.fxpkg)").with_source(e)
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            Error::invalid("package is not a valid gzipped tar archive").with_source(e)
        })?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| Error::invalid("package holds a file with a bad name").with_source(e))?;
        let name = path.to_string_lossy().trim_start_matches("./").to_string();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(|e| {
            Error::invalid(format!("reading {name} from the package archive")).with_source(e)
        })?;
        files.push((name, content));
    }
    if files.is_empty() {
        return Err(Error::invalid(
            "package is not a gzipped tar archive (.fxpkg) or holds no files",
        ));
    }
    Ok(files)
}

/// Checks that `bytes` are a valid WebAssembly component.
pub fn validate_component(bytes: &[u8]) -> Result<()> {
    if !wasmparser::Parser::is_component(bytes) {
        let what = if wasmparser::Parser::is_core_wasm(bytes) {
            "a core WebAssembly module, not a component: build with --target wasm32-wasip2"
        } else {
            "not a WebAssembly component"
        };
        return Err(Error::invalid(format!("package component is {what}")));
    }
    let mut validator = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
    validator
        .validate_all(bytes)
        .map_err(|e| Error::invalid(format!("package component is not valid WebAssembly: {e}")))?;
    Ok(())
}

/// A stored package version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageVersion {
    /// Package name.
    pub name: String,
    /// Version (immutable once stored).
    pub version: String,
    /// Digest of the archive.
    pub digest: PackageDigest,
    /// Archive size in bytes.
    pub size: u64,
    /// The manifest.
    pub manifest: Manifest,
    /// When it was uploaded.
    pub uploaded_at: DateTime<Utc>,
    /// Who uploaded it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_by: Option<String>,
}

/// An alias of a package pointing at one of its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageAlias {
    /// Package name.
    pub package: String,
    /// Alias name (`latest`, `stable`, …).
    pub alias: String,
    /// The version it points at.
    pub version: String,
}

/// Checks a package with the engine that will run it: compiles its component and links it
/// against the host's imports, as an executor would. The management server asks it at upload
/// (`ferrisfx dev` hands it its executor, whose cache then keeps the compiled component).
#[async_trait::async_trait]
pub trait PackageCheck: Send + Sync + 'static {
    /// `Ok` when the package's component compiles and links; `Invalid` with the reason when it
    /// cannot run.
    async fn check(&self, digest: &PackageDigest, archive: bytes::Bytes) -> crate::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_as_latest_follows_them() {
        use std::cmp::Ordering::*;
        let ascending = [
            "0.9.0",
            "1.0",
            "1.0.0-alpha",
            "1.0.0-alpha.2",
            "1.0.0-alpha.10",
            "1.0.0-beta",
            "1.0.0",
            "1.0.1",
            "1.2.0",
            "1.10.0",
            "2.0.0",
            "10.0.0",
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(version_order(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(
            version_order("1.0.0+build.1", "1.0.0+build.2"),
            Less,
            "total"
        );
        assert_eq!(version_order("1.0.0+x", "1.0.0-rc"), Greater);
    }

    /// The smallest valid component: the 8-byte preamble with the component layer.
    const EMPTY_COMPONENT: &[u8] = &[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    const EMPTY_MODULE: &[u8] = &[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

    fn manifest() -> Manifest {
        Manifest::parse("name = \"hello\"\nversion = \"1.0.0\"\n").unwrap()
    }

    #[test]
    fn archive_round_trips_and_is_addressed_by_digest() {
        let bytes = PackageArchive::build(&manifest(), EMPTY_COMPONENT).unwrap();
        let archive = PackageArchive::parse(&bytes, DEFAULT_MAX_PACKAGE_BYTES).unwrap();
        assert_eq!(archive.manifest.name, "hello");
        assert_eq!(archive.digest, PackageDigest::of(&bytes));
        archive.digest.verify(&bytes).unwrap();
        assert!(archive.digest.verify(b"other").is_err());
    }

    #[test]
    fn bad_packages_are_refused_with_the_reason() {
        let err = PackageArchive::parse(b"not an archive", 1 << 20).unwrap_err();
        assert!(err.message().contains("gzipped tar"), "{err}");

        let module = PackageArchive::build(&manifest(), EMPTY_MODULE).unwrap();
        let err = PackageArchive::parse(&module, 1 << 20).unwrap_err();
        assert!(err.message().contains("core WebAssembly module"), "{err}");

        let bytes = PackageArchive::build(&manifest(), EMPTY_COMPONENT).unwrap();
        let err = PackageArchive::parse(&bytes, 10).unwrap_err();
        assert!(err.message().contains("over the limit"), "{err}");

        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        append(&mut tar, "function.wasm", EMPTY_COMPONENT).unwrap();
        let no_manifest = tar.into_inner().unwrap().finish().unwrap();
        let err = PackageArchive::parse(&no_manifest, 1 << 20).unwrap_err();
        assert!(err.message().contains("no fx.toml"), "{err}");
    }

    #[test]
    fn versions_and_aliases_never_collide() {
        assert!(validate_version("1.0.0").is_ok());
        assert!(validate_version("latest").is_err());
        assert!(validate_alias("latest").is_ok());
        assert!(validate_alias("1x").is_err());
        assert!(Manifest::parse("name = \"x\"\nversion = \"1\"\nbogus = 1\n").is_err());
    }
}
