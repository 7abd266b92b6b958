//! `ferrisfx package build`: compile a function crate to a component (or take a component
//! built by componentize-py or componentize-js) and pack it with its manifest into a `.fxpkg`
//! archive. `ferrisfx package list`: the packages as a table (latest version, how many
//! versions, aliases), or the API's document.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use fx_core::package::{Manifest, PackageArchive, MANIFEST_FILE};
use serde_json::Value;

use crate::client::Api;
use crate::output::{self, cell, ListArgs, Table, View};

/// Flags of `ferrisfx package build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The function's folder (holding Cargo.toml and fx.toml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Use this component instead of running cargo (Python and JavaScript functions: the
    /// component their build wrote, e.g. `function.wasm`).
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// Where to write the archive (default `<name>-<version>.fxpkg` in the current folder).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Builds (unless `--wasm`) and packs.
pub fn build(args: BuildArgs) -> anyhow::Result<()> {
    let manifest_path = args.dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "reading {}: a function folder needs an fx.toml",
            manifest_path.display()
        )
    })?;
    let manifest =
        Manifest::parse(&text).with_context(|| format!("checking {}", manifest_path.display()))?;
    let wasm = match args.wasm {
        Some(path) => path,
        None if !args.dir.join("Cargo.toml").is_file() => bail!(
            "{} has no Cargo.toml to build: for a Python or JavaScript function, build the \
             component as its README says and pass it with --wasm function.wasm",
            args.dir.display()
        ),
        None => cargo_build(&args.dir)?,
    };
    let component = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let bytes = PackageArchive::build(&manifest, &component)?;
    let archive = PackageArchive::parse(&bytes, u64::MAX).context("checking the built package")?;
    let output = args
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{}-{}.fxpkg", manifest.name, manifest.version)));
    std::fs::write(&output, &bytes).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "built {} ({}@{}, {} bytes, sha256 {})",
        output.display(),
        manifest.name,
        manifest.version,
        bytes.len(),
        archive.digest
    );
    Ok(())
}

/// `package list`.
pub async fn list(api: &Api, args: &ListArgs) -> anyhow::Result<()> {
    output::list(
        args,
        "ferrisfx package list",
        || api.send(api.http().get(api.url("/packages"))),
        &table,
        &mut std::io::stdout().lock(),
    )
    .await
}

/// The packages of `GET /api/v1/packages` (`{"packages": [{"name", "versions" (newest
/// first), "aliases"}]}`) as a table.
pub fn table(v: &Value) -> View {
    let mut table = Table::new(&["name", "latest version", "versions", "aliases"]);
    for package in v["packages"].as_array().into_iter().flatten() {
        let versions = package["versions"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        let aliases: Vec<String> = package["aliases"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(alias, version)| format!("{alias}={}", cell(version)))
            .collect();
        table.push(vec![
            cell(&package["name"]),
            versions
                .first()
                .map_or_else(|| "-".into(), |v| cell(&v["version"])),
            versions.len().to_string(),
            if aliases.is_empty() {
                "-".into()
            } else {
                aliases.join(",")
            },
        ]);
    }
    View::table(&table, "packages")
}

pub(crate) fn cargo_build(dir: &Path) -> anyhow::Result<PathBuf> {
    let status = Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(dir)
        .status()
        .context("running cargo (is Rust installed?)")?;
    if !status.success() {
        bail!(
            "cargo build failed in {} (is the target installed? `rustup target add wasm32-wasip2`)",
            dir.display()
        );
    }
    let output = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(dir)
        .output()
        .context("running cargo metadata")?;
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata")?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    let manifest = std::fs::canonicalize(dir.join("Cargo.toml"))
        .with_context(|| format!("{} has no Cargo.toml", dir.display()))?;
    let package = metadata["packages"]
        .as_array()
        .and_then(|ps| {
            ps.iter().find(|p| {
                p["manifest_path"].as_str().map(PathBuf::from).as_deref()
                    == Some(manifest.as_path())
            })
        })
        .context("cargo metadata does not list this crate")?;
    let name = package["name"]
        .as_str()
        .context("crate without a name")?
        .replace('-', "_");
    let wasm = Path::new(target_dir)
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    if !wasm.exists() {
        bail!("{} was not built: is the crate a cdylib?", wasm.display());
    }
    Ok(wasm)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::output::testing::{assert_documents, lines};

    /// `GET /api/v1/packages` as the API answers it (`PackageList`).
    fn listing() -> Value {
        let version = |name: &str, version: &str| {
            json!({"name": name, "version": version, "digest": format!("sha256:{version}"),
                   "size": 1024, "uploaded_at": "2025-01-31T12:00:00Z", "uploaded_by": "admin",
                   "manifest": {"name": name, "version": version}})
        };
        json!({"packages": [
            {"name": "hello", "versions": [version("hello", "1.1.0"), version("hello", "1.0.0")],
             "aliases": {"latest": "1.1.0", "stable": "1.0.0"}},
            {"name": "größe", "versions": [version("größe", "0.1.0")], "aliases": {}},
        ]})
    }

    #[test]
    fn the_list_is_a_table_and_the_documents_the_answer() {
        let view = table(&listing());
        assert_eq!(
            lines(&view),
            [
                "NAME   LATEST VERSION  VERSIONS  ALIASES",
                "hello  1.1.0           2         latest=1.1.0,stable=1.0.0",
                "größe  0.1.0           1         -",
            ]
        );
        let empty = table(&json!({"packages": []}));
        assert_eq!(
            (empty.out.as_str(), empty.notes),
            ("", vec!["no packages".to_string()])
        );
        assert_documents(&listing(), &table);
    }
}
