//! `ferrisfx deploy`: the developer's loop in one command. Reads the project file
//! (`ferrisfx.yaml`), builds each function folder it lists under `packages:` (Rust with cargo,
//! Python with componentize-py, JavaScript with componentize-js), packs and uploads what
//! changed, applies the handlers and the rest of the file, and prints where to look.
//!
//! Package versions are immutable. A function whose code changed but whose `fx.toml` version
//! did not is uploaded as a development build of that version, `<version>+dev.<UTC time>`,
//! which the `latest` alias (what a handler runs unless it pins a version) then points at; an
//! unchanged function is not uploaded again. Bump `version` in fx.toml for a release.

use std::fmt;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use fx_core::package::{Manifest, PackageArchive, MANIFEST_FILE};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::client::Api;
use crate::project::{self, Project};

/// Flags of `ferrisfx deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The project file.
    #[arg(short = 'f', long = "file", default_value = project::DEFAULT_FILE)]
    pub file: PathBuf,
    /// Also delete what the platform holds of a kind the file declares and the file does not
    /// name (as `apply --prune`).
    #[arg(long)]
    pub prune: bool,
}

/// The language of a function folder, told by the files in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `Cargo.toml`: built with cargo for wasm32-wasip2.
    Rust,
    /// `app.py`: built with componentize-py.
    Python,
    /// `package.json` and `app.js`: built with componentize-js (`npm run build`).
    Js,
}

impl Language {
    /// The language of the function in `dir`.
    pub fn detect(dir: &Path) -> anyhow::Result<Language> {
        if dir.join("Cargo.toml").is_file() {
            Ok(Language::Rust)
        } else if dir.join("app.py").is_file() {
            Ok(Language::Python)
        } else if dir.join("package.json").is_file() {
            Ok(Language::Js)
        } else {
            bail!(
                "{} is not a function folder: no Cargo.toml (Rust), app.py (Python) or package.json (JavaScript); `ferrisfx new` makes one",
                dir.display()
            )
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::Js => "JavaScript",
        })
    }
}

/// What became of a package on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageOutcome {
    /// The server holds these exact contents already, as this version.
    Unchanged {
        /// Package name.
        name: String,
        /// Its version.
        version: String,
    },
    /// Uploaded as this version.
    Uploaded {
        /// Package name.
        name: String,
        /// Its version.
        version: String,
        /// Archive size.
        bytes: usize,
    },
}

impl fmt::Display for PackageOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackageOutcome::Unchanged { name, version } => {
                write!(f, "package {name}@{version} unchanged")
            }
            PackageOutcome::Uploaded {
                name,
                version,
                bytes,
            } => write!(f, "package {name}@{version} uploaded ({bytes} bytes)"),
        }
    }
}

/// Makes sure the server holds the package `bytes` (a .fxpkg). Uploaded unless the server
/// holds these contents already. A version the server holds with other contents is refused,
/// unless `dev_builds`: then the package goes up as `<version>+dev.<UTC time>`, and an earlier
/// development build with the same contents counts as unchanged.
pub async fn ensure_package(
    api: &Api,
    bytes: Vec<u8>,
    dev_builds: bool,
) -> anyhow::Result<PackageOutcome> {
    let archive = PackageArchive::parse(&bytes, u64::MAX).context("checking the package")?;
    let name = archive.manifest.name.clone();
    let version = archive.manifest.version.clone();
    let held = held_versions(api, &name).await?;
    let digest_of = |v: &str| {
        held.iter()
            .find(|(held, _)| held == v)
            .map(|(_, digest)| digest.clone())
    };
    let Some(held_digest) = digest_of(&version) else {
        return upload(api, bytes, name, version).await;
    };
    if held_digest == archive.digest.to_string() {
        return Ok(PackageOutcome::Unchanged { name, version });
    }
    if !dev_builds {
        return Err(crate::exit::Failure::Conflict(format!(
            "{name}@{version} exists on the server with other contents: versions are immutable, bump `version` in fx.toml"
        ))
        .into());
    }
    // The newest development build of this version, if its contents are these.
    let prefix = format!("{version}+dev.");
    if let Some((dev, digest)) = held
        .iter()
        .filter(|(v, _)| v.starts_with(&prefix))
        .max_by(|a, b| a.0.cmp(&b.0))
    {
        let same = with_version(&archive, dev)?;
        if PackageArchive::parse(&same, u64::MAX)?.digest.to_string() == *digest {
            return Ok(PackageOutcome::Unchanged {
                name,
                version: dev.clone(),
            });
        }
    }
    let dev = format!("{prefix}{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ"));
    let bytes = with_version(&archive, &dev)?;
    upload(api, bytes, name, dev).await
}

/// The archive of `archive`'s component with its manifest's version set to `version`.
fn with_version(archive: &PackageArchive, version: &str) -> anyhow::Result<Vec<u8>> {
    let mut manifest = archive.manifest.clone();
    manifest.version = version.to_string();
    Ok(PackageArchive::build(&manifest, &archive.component)?)
}

/// The versions of package `name` the server holds, with their digests (none if unknown).
async fn held_versions(api: &Api, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let url = api.entry_url("/packages", name)?;
    let found = match api.send(api.http().get(url)).await {
        Ok(found) => found,
        Err(e) if crate::exit::status(&e).is_some_and(|s| s.as_u16() == 404) => return Ok(vec![]),
        Err(e) => return Err(e.context(format!("reading package {name}"))),
    };
    Ok(found["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            Some((
                v["version"].as_str()?.to_string(),
                v["digest"].as_str()?.to_string(),
            ))
        })
        .collect())
}

async fn upload(
    api: &Api,
    bytes: Vec<u8>,
    name: String,
    version: String,
) -> anyhow::Result<PackageOutcome> {
    let size = bytes.len();
    let started = Instant::now();
    eprintln!("uploading {name}@{version} ({})…", human_bytes(size));
    let tty = std::io::stderr().is_terminal();
    let sent = api
        .send(
            api.http()
                .post(api.url("/packages"))
                .header("content-type", "application/octet-stream")
                .header("content-length", size)
                .body(progress_body(bytes, tty)),
        )
        .await;
    if tty {
        eprintln!();
    }
    sent.with_context(|| format!("uploading {name}@{version}"))?;
    eprintln!("uploaded in {:.1} s", started.elapsed().as_secs_f64());
    Ok(PackageOutcome::Uploaded {
        name,
        version,
        bytes: size,
    })
}

/// How much of a package goes up at a time.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// The body of an upload, sent in chunks; with `tty`, the share sent so far is shown on
/// standard error, on one line redrawn as it grows.
fn progress_body(bytes: Vec<u8>, tty: bool) -> reqwest::Body {
    let bytes = bytes::Bytes::from(bytes);
    let total = bytes.len();
    let chunks: Vec<bytes::Bytes> = (0..total)
        .step_by(UPLOAD_CHUNK)
        .map(|at| bytes.slice(at..(at + UPLOAD_CHUNK).min(total)))
        .collect();
    let mut sent = 0;
    let stream = futures::stream::iter(chunks.into_iter().map(move |chunk| {
        sent += chunk.len();
        if tty {
            eprint!(
                "\r  {:>3}% ({} of {})",
                sent * 100 / total.max(1),
                human_bytes(sent),
                human_bytes(total)
            );
            if sent == total {
                eprint!(" sent; the server checks the package…");
            }
        }
        Ok::<_, std::io::Error>(chunk)
    }));
    reqwest::Body::wrap_stream(stream)
}

fn human_bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / f64::from(1 << 10)),
        n => format!("{n} bytes"),
    }
}

/// Builds the function in `dir` and packs it: the archive's bytes.
pub fn build_package(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "reading {}: a function folder needs an fx.toml",
            manifest_path.display()
        )
    })?;
    let manifest =
        Manifest::parse(&text).with_context(|| format!("checking {}", manifest_path.display()))?;
    let language = Language::detect(dir)?;
    eprintln!(
        "building {} ({language}) in {}…",
        manifest.name,
        dir.display()
    );
    let started = Instant::now();
    let wasm = match language {
        Language::Rust => crate::package::cargo_build(dir)?,
        Language::Python => cached_build(dir, &["py"], |out| build_python(dir, out))?,
        Language::Js => cached_build(dir, &["js", "mjs"], |out| build_js(dir, out))?,
    };
    let component = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    eprintln!(
        "built {} in {:.1} s ({})",
        manifest.name,
        started.elapsed().as_secs_f64(),
        human_bytes(component.len())
    );
    Ok(PackageArchive::build(&manifest, &component)?)
}

/// Where built components are kept, inside the function folder.
const BUILD_DIR: &str = ".fxbuild";

/// Builds a Python or JavaScript component once per set of inputs: componentize-py and
/// componentize-js do not make identical components from identical sources, so an unchanged
/// function would otherwise get a new digest, and a new upload, on every deploy. The inputs
/// are the function's sources (`extensions`), its WIT, and its tool pins.
fn cached_build(
    dir: &Path,
    extensions: &[&str],
    build: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    let hash = inputs_hash(dir, extensions)?;
    let cache = dir.join(BUILD_DIR);
    let out = cache.join(format!("function-{hash}.wasm"));
    if out.is_file() {
        eprintln!("sources unchanged since {}: not rebuilt", out.display());
        return Ok(out);
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let partial = cache.join(format!("function-{hash}.wasm.partial"));
    build(&partial)?;
    std::fs::rename(&partial, &out).with_context(|| format!("writing {}", out.display()))?;
    // Earlier builds are stale now.
    for entry in std::fs::read_dir(&cache).into_iter().flatten().flatten() {
        if entry.path() != out {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(out)
}

/// A hash of the files a Python or JavaScript build reads: sources with `extensions`, WIT
/// files, and the tool pins, by path relative to `dir` (build outputs and tool folders left
/// out).
fn inputs_hash(dir: &Path, extensions: &[&str]) -> anyhow::Result<String> {
    const SKIP: [&str; 6] = [
        ".venv",
        "node_modules",
        BUILD_DIR,
        "target",
        ".git",
        "__pycache__",
    ];
    const PINS: [&str; 3] = ["requirements.txt", "package.json", "package-lock.json"];
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let listing =
            std::fs::read_dir(&folder).with_context(|| format!("reading {}", folder.display()))?;
        for entry in listing {
            let path = entry?.path();
            let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !SKIP.contains(&file_name) {
                    stack.push(path);
                }
                continue;
            }
            let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if extensions.contains(&extension) || extension == "wit" || PINS.contains(&file_name) {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        let relative = file.strip_prefix(dir).unwrap_or(&file);
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?);
        hasher.update([0]);
    }
    Ok(hex::encode(&hasher.finalize()[..8]))
}

/// Runs `command`, failing with `what` and the command line when it fails.
fn run(mut command: Command, what: &str) -> anyhow::Result<()> {
    let line = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("{what}: cannot run {line}"))?;
    if !status.success() {
        bail!("{what} failed ({status}): {line}");
    }
    Ok(())
}

/// The componentize-py to use: `FX_COMPONENTIZE_PY`, the project's `.venv`, or one on the
/// PATH; else one installed into the project's `.venv` from its requirements.txt.
fn componentize_py(dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(tool) = std::env::var_os("FX_COMPONENTIZE_PY") {
        return Ok(PathBuf::from(tool));
    }
    let venv_tool = dir.join(".venv/bin/componentize-py");
    if venv_tool.is_file() {
        return Ok(venv_tool);
    }
    let on_path = Command::new("componentize-py")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        return Ok(PathBuf::from("componentize-py"));
    }
    eprintln!(
        "installing componentize-py into {} (once; pinned in requirements.txt)…",
        dir.join(".venv").display()
    );
    let mut venv = Command::new("python3");
    venv.args(["-m", "venv", ".venv"]).current_dir(dir);
    run(
        venv,
        "creating a Python virtual environment (is python3 installed?)",
    )?;
    let mut pip = Command::new(dir.join(".venv/bin/pip"));
    pip.args(["install", "--quiet", "-r", "requirements.txt"])
        .current_dir(dir);
    run(pip, "installing componentize-py")?;
    Ok(venv_tool)
}

fn build_python(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let tool = componentize_py(dir)?;
    let out = std::path::absolute(out)?;
    let mut build = Command::new(tool);
    build
        .args([
            "-d",
            "wit",
            "-w",
            "function",
            "componentize",
            "app",
            "-p",
            ".",
            "-o",
        ])
        .arg(&out)
        .current_dir(dir);
    run(build, "componentize-py")
}

fn build_js(dir: &Path, out: &Path) -> anyhow::Result<()> {
    if !dir.join("node_modules").exists() {
        eprintln!("installing componentize-js and jco (npm ci, once)…");
        let mut install = Command::new("npm");
        install
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir);
        run(install, "npm ci (is Node.js installed?)")?;
    }
    let out = std::path::absolute(out)?;
    let mut build = Command::new("node");
    build.arg("build.mjs").arg("wit").arg(&out).current_dir(dir);
    run(build, "node build.mjs")
}

/// `ferrisfx deploy`.
pub async fn run_deploy(api: &Api, server: &str, args: &DeployArgs) -> anyhow::Result<()> {
    let project = Project::load(&args.file)?;
    // The server answers and lets this token read packages, before minutes of compiling.
    api.send(api.http().get(api.url("/packages")))
        .await
        .context("checking the server before building")?;
    for source in &project.packages {
        let Some(path) = &source.path else { continue };
        let dir = if path == Path::new(".") {
            project.base.clone()
        } else {
            project.base.join(path)
        };
        let build_dir = dir.clone();
        let bytes = tokio::task::spawn_blocking(move || build_package(&build_dir))
            .await
            .context("the build stopped")??;
        let outcome = ensure_package(api, bytes, true)
            .await
            .with_context(|| format!("deploying {}", dir.display()))?;
        println!("{outcome}");
    }
    project::apply_project(api, &project, args.prune, false).await?;
    print!("{}", urls(server, &project));
    Ok(())
}

/// Where to look at what the project deployed.
pub fn urls(server: &str, project: &Project) -> String {
    let server = server.trim_end_matches('/');
    let mut out = String::new();
    let names = |collection: &str| -> Vec<String> {
        project
            .entries
            .iter()
            .filter(|(kind, _)| kind.collection == collection)
            .flat_map(|(_, entries)| entries.iter().map(|(name, _)| name.clone()))
            .collect()
    };
    for name in names("handlers") {
        out.push_str(&format!(
            "handler {name}: {server}/executions?handler={name}  (follow: ferrisfx logs {name} -f)\n"
        ));
    }
    for name in names("hooks") {
        out.push_str(&format!("webhook {name}: POST {server}/hooks/{name}\n"));
    }
    for name in names("workflows") {
        out.push_str(&format!("workflow {name}: {server}/workflows/{name}\n"));
    }
    out.push_str(&format!(
        "send events: POST {server}/api/v1/events  (or: ferrisfx emit --type <type> --data '{{}}')\n"
    ));
    out
}

/// The handlers a project file declares, as the API holds them (for tests and tools).
pub fn declared_handlers(project: &Project) -> Vec<Value> {
    project
        .entries
        .iter()
        .filter(|(kind, _)| kind.collection == "handlers")
        .flat_map(|(_, entries)| entries.iter().map(|(_, v)| v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_is_told_by_the_files() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Language::detect(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("not a function folder"), "{err}");
        std::fs::write(tmp.path().join("package.json"), "{}").unwrap();
        assert_eq!(Language::detect(tmp.path()).unwrap(), Language::Js);
        std::fs::write(tmp.path().join("app.py"), "").unwrap();
        assert_eq!(Language::detect(tmp.path()).unwrap(), Language::Python);
        std::fs::write(tmp.path().join("Cargo.toml"), "").unwrap();
        assert_eq!(Language::detect(tmp.path()).unwrap(), Language::Rust);
    }

    #[test]
    fn the_inputs_hash_follows_sources_and_pins_not_build_outputs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("app.py"), "x = 1").unwrap();
        std::fs::write(dir.join("requirements.txt"), "componentize-py==0.17.2").unwrap();
        std::fs::create_dir_all(dir.join("wit")).unwrap();
        std::fs::write(dir.join("wit/function.wit"), "package a:b;").unwrap();
        let first = inputs_hash(dir, &["py"]).unwrap();
        // Build outputs, tool folders and unrelated files do not count.
        std::fs::create_dir_all(dir.join(".venv/lib")).unwrap();
        std::fs::write(dir.join(".venv/lib/x.py"), "y").unwrap();
        std::fs::write(dir.join("function.wasm"), "wasm").unwrap();
        std::fs::write(dir.join("README.md"), "docs").unwrap();
        assert_eq!(inputs_hash(dir, &["py"]).unwrap(), first);
        for (file, text) in [
            ("app.py", "x = 2"),
            ("requirements.txt", "componentize-py==0.18.0"),
            ("wit/function.wit", "package a:c;"),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
            assert_ne!(inputs_hash(dir, &["py"]).unwrap(), first, "{file}");
        }
    }

    #[test]
    fn a_cached_component_is_reused_until_a_source_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("app.js"), "export const a = 1").unwrap();
        let mut builds = 0;
        let mut build = |out: &Path| {
            builds += 1;
            std::fs::write(out, format!("build {builds}")).map_err(Into::into)
        };
        let first = cached_build(dir, &["js"], &mut build).unwrap();
        let again = cached_build(dir, &["js"], &mut build).unwrap();
        assert_eq!(first, again);
        std::fs::write(dir.join("app.js"), "export const a = 2").unwrap();
        let changed = cached_build(dir, &["js"], &mut build).unwrap();
        assert_ne!(changed, first);
        assert!(!first.exists(), "the stale build is removed");
        assert_eq!(std::fs::read_to_string(changed).unwrap(), "build 2");
    }

    #[test]
    fn a_failed_build_leaves_no_cached_component() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("app.py"), "").unwrap();
        let err =
            cached_build(tmp.path(), &["py"], |_| bail!("componentize-py failed")).unwrap_err();
        assert!(err.to_string().contains("componentize-py failed"));
        let again = cached_build(tmp.path(), &["py"], |out| {
            std::fs::write(out, "ok").map_err(Into::into)
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(again).unwrap(), "ok");
    }
}
