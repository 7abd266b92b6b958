//! `ferrisfx new`: scaffold a function project in Rust, Python or JavaScript from the templates
//! in `sdk/templates`, embedded in the binary.
//!
//! Every template is the `hello` example under the project's name: it logs `hello from FerrisFX`
//! and answers with a `com.example.<name>.greeted` event, so a fresh scaffold builds, uploads and
//! runs as it is. Python and JavaScript projects carry a copy of the WIT world and pin their build
//! tools at the versions the examples are built and tested with. Rust projects carry a copy of the
//! guest SDK (`vendor/ferrisfx-guest`, with the WIT world it reads), unless `--guest` says to take
//! it from git or from a checkout; nothing written names a path of this machine, so a project
//! committed to git builds wherever it is cloned.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};

/// The WIT world every function implements; Python and JavaScript projects build against a copy.
const WIT: &str = include_str!("../../sdk/wit/function.wit");
/// The manifest template, shared by the languages.
const FX_TOML: &str = include_str!("../../sdk/templates/fx.toml");
/// The project file `ferrisfx deploy` reads: the function's folder and a handler running it.
const PROJECT_FILE: &str = include_str!("../../sdk/templates/ferrisfx.yaml");

/// The language of a new function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// A Rust crate built for wasm32-wasip2 with the guest SDK (`ferrisfx-guest`).
    Rust,
    /// A Python module built with componentize-py.
    Python,
    /// A JavaScript module built with componentize-js.
    Js,
}

impl Language {
    fn display_name(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::Js => "JavaScript",
        }
    }

    /// The template files: path in the project, contents with `{{…}}` placeholders.
    fn files(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Language::Rust => vec![
                (
                    "Cargo.toml",
                    include_str!("../../sdk/templates/rust/Cargo.toml"),
                ),
                (
                    "src/lib.rs",
                    include_str!("../../sdk/templates/rust/src/lib.rs"),
                ),
                (
                    "README.md",
                    include_str!("../../sdk/templates/rust/README.md"),
                ),
                (
                    ".gitignore",
                    include_str!("../../sdk/templates/rust/gitignore"),
                ),
            ],
            Language::Python => vec![
                ("app.py", include_str!("../../sdk/templates/python/app.py")),
                (
                    "requirements.txt",
                    include_str!("../../examples/hello-python/requirements.txt"),
                ),
                (
                    "README.md",
                    include_str!("../../sdk/templates/python/README.md"),
                ),
                (
                    ".gitignore",
                    include_str!("../../sdk/templates/python/gitignore"),
                ),
                ("wit/function.wit", WIT),
            ],
            Language::Js => vec![
                ("app.js", include_str!("../../sdk/templates/js/app.js")),
                (
                    "build.mjs",
                    include_str!("../../examples/hello-js/build.mjs"),
                ),
                (
                    "package.json",
                    include_str!("../../sdk/templates/js/package.json"),
                ),
                ("package-lock.json", JS_LOCK),
                (
                    "README.md",
                    include_str!("../../sdk/templates/js/README.md"),
                ),
                (
                    ".gitignore",
                    include_str!("../../sdk/templates/js/gitignore"),
                ),
                ("wit/function.wit", WIT),
            ],
        }
    }
}

/// Where a Rust project's `Cargo.toml` takes the guest SDK (`ferrisfx-guest`) from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GuestSource {
    /// A copy in the project, `vendor/ferrisfx-guest`, written from this binary: builds anywhere,
    /// offline; updated on purpose with `ferrisfx new --update-guest PROJECT`.
    Vendor,
    /// The FerrisFX git repository: follows upstream (`cargo update -p ferrisfx-guest`).
    Git,
    /// The `sdk/guest` of a FerrisFX checkout given with `--sdk`, by a path relative to the
    /// project: for developing the SDK itself.
    Path,
}

/// The guest SDK dependency of a Rust project, resolved from the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guest {
    /// The copy in `vendor/ferrisfx-guest`.
    Vendor,
    /// The FerrisFX git repository.
    Git,
    /// The `sdk/guest` folder of a checkout, canonical.
    Path(PathBuf),
}

/// The FerrisFX git repository, where cargo finds `ferrisfx-guest` (in `sdk/guest`).
const GIT_REPOSITORY: &str = "https://github.com/ferrisfx/ferrisfx";
/// Where a Rust project keeps its copy of the guest SDK.
pub const VENDOR_DIR: &str = "vendor/ferrisfx-guest";

/// The guest SDK's files as in `sdk/guest`: path in the crate, contents. A test checks that this
/// is every file of `sdk/guest`, unchanged.
const GUEST_FILES: [(&str, &str); 7] = [
    ("Cargo.toml", include_str!("../../sdk/guest/Cargo.toml")),
    (".gitignore", include_str!("../../sdk/guest/.gitignore")),
    ("src/lib.rs", include_str!("../../sdk/guest/src/lib.rs")),
    (
        "src/config.rs",
        include_str!("../../sdk/guest/src/config.rs"),
    ),
    ("src/error.rs", include_str!("../../sdk/guest/src/error.rs")),
    ("src/event.rs", include_str!("../../sdk/guest/src/event.rs")),
    ("src/log.rs", include_str!("../../sdk/guest/src/log.rs")),
];
/// How `sdk/guest/src/lib.rs` finds the WIT world in a checkout: `sdk/wit`, beside the crate.
const WIT_PATH_IN_CHECKOUT: &str = "path: \"../wit\",";
/// How the vendored copy finds it: in its own `wit/`, so the copy needs nothing outside it.
const WIT_PATH_VENDORED: &str = "path: \"wit\",";

/// The files of the vendored guest SDK: path in [`VENDOR_DIR`], contents. They are the files of
/// `sdk/guest` and the WIT world in `wit/`, with the one line of `src/lib.rs` that names the
/// WIT folder pointed at that copy.
pub fn vendored_guest() -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut files = Vec::with_capacity(GUEST_FILES.len() + 1);
    for (path, text) in GUEST_FILES {
        if path == "src/lib.rs" {
            if text.matches(WIT_PATH_IN_CHECKOUT).count() != 1 {
                bail!(
                    "the guest SDK's src/lib.rs no longer reads its WIT world with \
                     `{WIT_PATH_IN_CHECKOUT}`: cannot vendor it"
                );
            }
            files.push((path, text.replace(WIT_PATH_IN_CHECKOUT, WIT_PATH_VENDORED)));
        } else {
            files.push((path, text.to_string()));
        }
    }
    files.push(("wit/function.wit", WIT.to_string()));
    Ok(files)
}

/// The lock of `examples/hello-js`: the JavaScript template pins the same tools.
const JS_LOCK: &str = include_str!("../../examples/hello-js/package-lock.json");
/// The project name in [`JS_LOCK`], replaced by the new project's.
const JS_LOCK_NAME: &str = "\"name\": \"hello-js\"";

/// Flags of `ferrisfx new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The function's language.
    #[arg(long, value_enum, required_unless_present = "update_guest")]
    pub lang: Option<Language>,
    /// The function's name: its package name, and the folder created unless `--dir` is given.
    /// Lowercase letters, digits and '-', starting with a letter.
    #[arg(required_unless_present = "update_guest")]
    pub name: Option<String>,
    /// Where to create the project (must not exist; default `./NAME`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Rust only: where the crate takes the guest SDK from (default `vendor`, or `path` when
    /// `--sdk` is given).
    #[arg(long, value_enum)]
    pub guest: Option<GuestSource>,
    /// Rust only: a FerrisFX checkout whose `sdk/guest` the crate depends on, written as a path
    /// relative to the project (implies `--guest path`).
    #[arg(long, value_name = "DIR")]
    pub sdk: Option<PathBuf>,
    /// Replace the vendored guest SDK (`vendor/ferrisfx-guest`) of the existing Rust project in
    /// PROJECT with this binary's copy, and change nothing else.
    #[arg(
        long,
        value_name = "PROJECT",
        conflicts_with_all = ["lang", "name", "dir", "guest", "sdk"]
    )]
    pub update_guest: Option<PathBuf>,
}

/// Creates the project, or updates a project's vendored guest SDK.
pub fn run(args: NewArgs) -> anyhow::Result<()> {
    if let Some(project) = &args.update_guest {
        let depends = update_guest(project)?;
        println!(
            "updated {} to the guest SDK of ferrisfx {}",
            project.join(VENDOR_DIR).display(),
            env!("CARGO_PKG_VERSION")
        );
        if !depends {
            println!(
                "note: {} does not depend on it yet: set \
                 ferrisfx-guest = {{ path = \"{VENDOR_DIR}\" }}",
                project.join("Cargo.toml").display()
            );
        }
        return Ok(());
    }
    let (Some(lang), Some(name)) = (args.lang, args.name) else {
        bail!("give --lang and NAME to create a project, or --update-guest PROJECT");
    };
    validate_function_name(&name)?;
    if lang != Language::Rust && (args.guest.is_some() || args.sdk.is_some()) {
        bail!("--guest and --sdk are for Rust projects only");
    }
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&name));
    let guest = Guest::from_flags(args.guest, args.sdk.as_deref())?;
    scaffold(lang, &name, &dir, &guest)?;
    println!(
        "created {} function {} in {}",
        lang.display_name(),
        name,
        dir.display()
    );
    println!(
        "next: cd {} && ferrisfx deploy    (builds it, uploads it and runs it as handler {name} on com.example.hello events; see README.md)",
        dir.display()
    );
    Ok(())
}

impl Guest {
    /// The dependency `--guest` and `--sdk` ask for: `--sdk` alone means `path`, neither
    /// means `vendor`.
    pub fn from_flags(source: Option<GuestSource>, sdk: Option<&Path>) -> anyhow::Result<Guest> {
        match (source, sdk) {
            (None | Some(GuestSource::Path), Some(sdk)) => {
                let root = std::fs::canonicalize(sdk)
                    .with_context(|| format!("--sdk {}: no such folder", sdk.display()))?;
                let guest = root.join("sdk/guest");
                if !guest.join("Cargo.toml").is_file() {
                    bail!(
                        "--sdk {}: not a FerrisFX checkout (no sdk/guest/Cargo.toml)",
                        sdk.display()
                    );
                }
                Ok(Guest::Path(guest))
            }
            (Some(GuestSource::Path), None) => {
                bail!("--guest path needs --sdk DIR, the FerrisFX checkout to depend on")
            }
            (Some(source), Some(_)) => bail!(
                "--sdk goes with --guest path, not --guest {}",
                if source == GuestSource::Git {
                    "git"
                } else {
                    "vendor"
                }
            ),
            (None | Some(GuestSource::Vendor), None) => Ok(Guest::Vendor),
            (Some(GuestSource::Git), None) => Ok(Guest::Git),
        }
    }

    /// The TOML value of the `ferrisfx-guest` dependency of a project in `dir`.
    fn dependency(&self, dir: &Path) -> anyhow::Result<String> {
        Ok(match self {
            Guest::Vendor => format!("{{ path = \"{VENDOR_DIR}\" }}"),
            Guest::Git => format!("{{ git = \"{GIT_REPOSITORY}\" }}"),
            Guest::Path(guest) => {
                let relative = relative_path(&resolved(dir)?, guest)?;
                format!("{{ path = {:?} }}", relative)
            }
        })
    }
}

/// Writes the project of `lang` named `name` into `dir`, which must not exist; a Rust project
/// takes the guest SDK from `guest`.
pub fn scaffold(lang: Language, name: &str, dir: &Path, guest: &Guest) -> anyhow::Result<()> {
    validate_function_name(name)?;
    if dir.exists() {
        bail!(
            "{} already exists: choose another NAME or --dir",
            dir.display()
        );
    }
    let dependency = guest.dependency(dir)?;
    let mut files: Vec<(String, String)> = Vec::new();
    for (path, template) in lang
        .files()
        .into_iter()
        .chain([("fx.toml", FX_TOML), ("ferrisfx.yaml", PROJECT_FILE)])
    {
        let text = if path == "package-lock.json" {
            template.replace(JS_LOCK_NAME, &format!("\"name\": \"{name}\""))
        } else {
            template
                .replace("{{name}}", name)
                .replace("{{language}}", lang.display_name())
                .replace("{{guest}}", &dependency)
        };
        files.push((path.to_string(), text));
    }
    if lang == Language::Rust && *guest == Guest::Vendor {
        for (path, text) in vendored_guest()? {
            files.push((format!("{VENDOR_DIR}/{path}"), text));
        }
    }
    write_files(dir, files)
}

/// Replaces `project/vendor/ferrisfx-guest` with this binary's copy of the guest SDK; returns
/// whether the project's `Cargo.toml` depends on it.
pub fn update_guest(project: &Path) -> anyhow::Result<bool> {
    let manifest = project.join("Cargo.toml");
    let cargo = std::fs::read_to_string(&manifest)
        .with_context(|| format!("{}: not a Rust project", manifest.display()))?;
    let vendor = project.join(VENDOR_DIR);
    if vendor.exists() {
        let vendored = std::fs::read_to_string(vendor.join("Cargo.toml")).unwrap_or_default();
        if !vendored.contains("name = \"ferrisfx-guest\"") {
            bail!(
                "{} does not hold a copy of ferrisfx-guest: left alone",
                vendor.display()
            );
        }
        std::fs::remove_dir_all(&vendor)
            .with_context(|| format!("removing the old copy in {}", vendor.display()))?;
    }
    let files = vendored_guest()?
        .into_iter()
        .map(|(path, text)| (path.to_string(), text));
    write_files(&vendor, files)?;
    Ok(cargo.contains(VENDOR_DIR))
}

/// Writes `files` (path under `dir`, contents), creating folders as needed.
fn write_files(
    dir: &Path,
    files: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    for (path, text) in files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}

/// `path` made absolute with symbolic links resolved, even when it does not exist yet: its
/// longest existing ancestor canonicalized, the rest appended.
fn resolved(path: &Path) -> anyhow::Result<PathBuf> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    for ancestor in absolute.ancestors() {
        let Ok(mut resolved) = std::fs::canonicalize(ancestor) else {
            continue;
        };
        let rest = absolute.strip_prefix(ancestor).unwrap_or(Path::new(""));
        for part in rest.components() {
            match part {
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(part) => resolved.push(part),
                _ => {}
            }
        }
        return Ok(resolved);
    }
    bail!("resolving {}: no part of it exists", path.display())
}

/// The path from folder `from` to `to`, both absolute and resolved, with '/' between its parts
/// (as cargo reads it on every platform).
fn relative_path(from: &Path, to: &Path) -> anyhow::Result<String> {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    if common == 0 {
        bail!(
            "the project and the SDK are on different roots: no relative path from one to the other"
        );
    }
    let parts: Vec<String> = std::iter::repeat_n("..".to_string(), from.len() - common)
        .chain(
            to[common..]
                .iter()
                .map(|part| part.as_os_str().to_string_lossy().into_owned()),
        )
        .collect();
    Ok(if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    })
}

/// A function name: 1 to 64 lowercase letters, digits and '-', starting with a letter and not
/// ending with '-', so that it is a valid package, crate and npm name at once.
pub fn validate_function_name(name: &str) -> anyhow::Result<()> {
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "invalid function name {name:?}: use 1 to 64 lowercase letters, digits and '-', \
             starting with a letter and not ending with '-' (e.g. order-pricing)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_package_crate_and_npm_names_are_refused() {
        for bad in [
            "",
            "Hello",
            "1st",
            "-x",
            "x-",
            "a_b",
            "a.b",
            "a b",
            &"x".repeat(65),
        ] {
            let err = validate_function_name(bad).unwrap_err().to_string();
            assert!(err.contains("invalid function name"), "{bad:?}: {err}");
        }
        for good in ["a", "hello", "order-pricing-2"] {
            validate_function_name(good).unwrap();
        }
    }

    #[test]
    fn every_language_scaffolds_a_complete_project_named_after_the_function() {
        let tmp = tempfile::tempdir().unwrap();
        for (lang, source) in [
            (Language::Rust, "src/lib.rs"),
            (Language::Python, "app.py"),
            (Language::Js, "app.js"),
        ] {
            let dir = tmp.path().join(format!("{lang:?}"));
            scaffold(lang, "greeter", &dir, &Guest::Vendor).unwrap();
            let manifest = std::fs::read_to_string(dir.join("fx.toml")).unwrap();
            let manifest = fx_core::package::Manifest::parse(&manifest).unwrap();
            assert_eq!(manifest.name, "greeter");
            let code = std::fs::read_to_string(dir.join(source)).unwrap();
            assert!(code.contains("/functions/greeter"), "{lang:?}: {code}");
            for entry in walk(&dir) {
                let text = std::fs::read_to_string(&entry).unwrap();
                assert!(
                    !text.contains("{{"),
                    "{} keeps a placeholder",
                    entry.display()
                );
            }
            assert!(dir.join("README.md").is_file() && dir.join(".gitignore").is_file());
            assert_eq!(
                dir.join("vendor").exists(),
                lang == Language::Rust,
                "{lang:?}"
            );
        }
        let lock = std::fs::read_to_string(tmp.path().join("Js/package-lock.json")).unwrap();
        assert_eq!(
            lock.matches("\"name\": \"greeter\"").count(),
            2,
            "{lock:.300}"
        );
        let cargo = std::fs::read_to_string(tmp.path().join("Rust/Cargo.toml")).unwrap();
        assert!(cargo.contains("ferrisfx-guest = { path = \"vendor/ferrisfx-guest\" }"));
        assert!(tmp
            .path()
            .join("Rust/vendor/ferrisfx-guest/wit/function.wit")
            .is_file());
    }

    #[test]
    fn an_existing_folder_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let err = scaffold(Language::Python, "greeter", tmp.path(), &Guest::Vendor)
            .unwrap_err()
            .to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_js_template_pins_the_tools_the_example_is_tested_with() {
        let deps = |text: &str| {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            v["devDependencies"].clone()
        };
        assert_eq!(
            deps(include_str!("../../sdk/templates/js/package.json")),
            deps(include_str!("../../examples/hello-js/package.json"))
        );
        assert_eq!(JS_LOCK.matches(JS_LOCK_NAME).count(), 2);
    }

    /// The root of this checkout.
    fn checkout() -> PathBuf {
        std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).unwrap()
    }

    /// The `ferrisfx-guest` entry of the project's `Cargo.toml`.
    fn guest_entry(dir: &Path) -> toml::Value {
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let cargo: toml::Value = toml::from_str(&cargo).unwrap();
        cargo["dependencies"]["ferrisfx-guest"].clone()
    }

    #[test]
    fn no_scaffolded_file_names_a_path_of_this_machine() {
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path().join("projects");
        let mut forbidden = vec![
            tmp.path().display().to_string(),
            std::fs::canonicalize(tmp.path())
                .unwrap()
                .display()
                .to_string(),
            checkout().display().to_string(),
            env!("CARGO_MANIFEST_DIR").to_string(),
        ];
        forbidden.dedup();
        // A checkout beside the projects: a relative path from a project in /tmp to this
        // checkout would climb to `/` and spell this checkout's path out.
        let sdk = tmp.path().join("src/ferrisfx");
        std::fs::create_dir_all(sdk.join("sdk/guest")).unwrap();
        std::fs::write(sdk.join("sdk/guest/Cargo.toml"), GUEST_FILES[0].1).unwrap();
        let guests = [
            Guest::Vendor,
            Guest::Git,
            Guest::from_flags(None, Some(&sdk)).unwrap(),
        ];
        for lang in [Language::Rust, Language::Python, Language::Js] {
            for (i, guest) in guests.iter().enumerate() {
                let dir = parent.join(format!("{lang:?}-{i}"));
                scaffold(lang, "greeter", &dir, guest).unwrap();
                for file in walk(&dir) {
                    let text = std::fs::read_to_string(&file).unwrap();
                    for path in &forbidden {
                        assert!(
                            !text.contains(path.as_str()),
                            "{} names {path}",
                            file.display()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_vendored_guest_sdk_is_sdk_guest_with_its_wit_world() {
        let sdk = checkout().join("sdk/guest");
        let vendored: std::collections::BTreeMap<&str, String> =
            vendored_guest().unwrap().into_iter().collect();
        let mut on_disk: Vec<String> = walk(&sdk)
            .iter()
            .map(|file| {
                let path = file.strip_prefix(&sdk).unwrap();
                path.to_string_lossy().replace('\\', "/")
            })
            .filter(|path| !path.starts_with("target/") && path != "Cargo.lock")
            .collect();
        on_disk.push("wit/function.wit".to_string());
        on_disk.sort();
        assert_eq!(
            vendored.keys().copied().collect::<Vec<_>>(),
            on_disk,
            "the vendored copy lacks or adds files: update GUEST_FILES"
        );
        for (path, text) in &vendored {
            let original = match *path {
                "wit/function.wit" => {
                    std::fs::read_to_string(checkout().join("sdk/wit/function.wit"))
                }
                _ => std::fs::read_to_string(sdk.join(path)),
            }
            .unwrap();
            let expected = if *path == "src/lib.rs" {
                original.replace(WIT_PATH_IN_CHECKOUT, WIT_PATH_VENDORED)
            } else {
                original
            };
            assert!(*text == expected, "vendored {path} differs from the SDK's");
        }
        assert!(vendored["src/lib.rs"].contains(WIT_PATH_VENDORED));
        assert!(!vendored["src/lib.rs"].contains("../wit"));
    }

    #[test]
    fn a_moved_vendored_project_still_resolves_its_guest_sdk() {
        let tmp = tempfile::tempdir().unwrap();
        let first = tmp.path().join("here/greeter");
        scaffold(Language::Rust, "greeter", &first, &Guest::Vendor).unwrap();
        let moved = tmp.path().join("elsewhere/deeper/greeter");
        std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
        std::fs::rename(&first, &moved).unwrap();

        assert_eq!(
            guest_entry(&moved)["path"].as_str(),
            Some("vendor/ferrisfx-guest")
        );
        let vendored = std::fs::read_to_string(moved.join(VENDOR_DIR).join("Cargo.toml")).unwrap();
        let vendored: toml::Value = toml::from_str(&vendored).unwrap();
        assert_eq!(vendored["package"]["name"].as_str(), Some("ferrisfx-guest"));

        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = std::process::Command::new(cargo)
            .args([
                "metadata",
                "--offline",
                "--no-deps",
                "--format-version",
                "1",
            ])
            .current_dir(&moved)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "cargo metadata: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let guest = metadata["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "ferrisfx-guest")
            .unwrap_or_else(|| panic!("no ferrisfx-guest in {metadata:#}"));
        let manifest = PathBuf::from(guest["manifest_path"].as_str().unwrap());
        assert_eq!(
            std::fs::canonicalize(manifest).unwrap(),
            std::fs::canonicalize(moved.join(VENDOR_DIR).join("Cargo.toml")).unwrap()
        );
    }

    #[test]
    fn an_sdk_checkout_is_named_by_a_path_relative_to_the_project() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("not/yet/made/../greeter");
        let guest = Guest::from_flags(Some(GuestSource::Path), Some(&checkout())).unwrap();
        scaffold(Language::Rust, "greeter", &dir, &guest).unwrap();
        let path = guest_entry(&dir)["path"].as_str().unwrap().to_string();
        assert!(path.starts_with("../"), "{path}");
        assert_eq!(
            std::fs::canonicalize(dir.join(&path)).unwrap(),
            checkout().join("sdk/guest")
        );
        assert!(!dir.join("vendor").exists());

        let git = tmp.path().join("git");
        scaffold(Language::Rust, "greeter", &git, &Guest::Git).unwrap();
        assert_eq!(guest_entry(&git)["git"].as_str(), Some(GIT_REPOSITORY));
    }

    #[test]
    fn guest_flags_that_do_not_go_together_are_refused() {
        assert_eq!(Guest::from_flags(None, None).unwrap(), Guest::Vendor);
        assert_eq!(
            Guest::from_flags(Some(GuestSource::Git), None).unwrap(),
            Guest::Git
        );
        assert!(matches!(
            Guest::from_flags(None, Some(&checkout())).unwrap(),
            Guest::Path(_)
        ));
        for (source, sdk, error) in [
            (Some(GuestSource::Path), None, "needs --sdk"),
            (
                Some(GuestSource::Git),
                Some(checkout()),
                "goes with --guest path",
            ),
            (
                Some(GuestSource::Vendor),
                Some(checkout()),
                "goes with --guest path",
            ),
            (None, Some(PathBuf::from("/")), "not a FerrisFX checkout"),
        ] {
            let err = Guest::from_flags(source, sdk.as_deref()).unwrap_err();
            assert!(err.to_string().contains(error), "{source:?}: {err}");
        }
    }

    #[test]
    fn update_guest_replaces_the_vendored_copy_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("greeter");
        scaffold(Language::Rust, "greeter", &dir, &Guest::Vendor).unwrap();
        let vendor = dir.join(VENDOR_DIR);
        std::fs::write(vendor.join("src/stale.rs"), "// gone in the new SDK").unwrap();
        std::fs::write(vendor.join("src/lib.rs"), "// an old SDK").unwrap();
        std::fs::write(dir.join("src/lib.rs"), "// my function").unwrap();

        assert!(update_guest(&dir).unwrap());
        assert!(!vendor.join("src/stale.rs").exists());
        let lib = std::fs::read_to_string(vendor.join("src/lib.rs")).unwrap();
        assert!(lib.contains(WIT_PATH_VENDORED));
        let function = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert_eq!(function, "// my function");

        // A git project gains the copy, and is told its Cargo.toml does not use it yet.
        let git = tmp.path().join("git");
        scaffold(Language::Rust, "greeter", &git, &Guest::Git).unwrap();
        assert!(!update_guest(&git).unwrap());
        assert!(git.join(VENDOR_DIR).join("wit/function.wit").is_file());

        // A vendor folder holding something else, and a folder that is no Rust project.
        std::fs::write(vendor.join("Cargo.toml"), "[package]\nname = \"mine\"\n").unwrap();
        let err = update_guest(&dir).unwrap_err().to_string();
        assert!(err.contains("left alone"), "{err}");
        assert!(vendor.join("src/lib.rs").exists());
        let err = update_guest(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("not a Rust project"), "{err}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
