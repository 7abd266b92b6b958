//! `ferrisfx new`: scaffold a function project in Rust, Python or JavaScript from the templates
//! in `sdk/templates`, embedded in the binary.
//!
//! Every template is the `hello` example under the project's name: it logs `hello from FerrisFX`
//! and answers with a `com.example.<name>.greeted` event, so a fresh scaffold builds, uploads and
//! runs as it is. Python and JavaScript projects carry a copy of the WIT world and pin their build
//! tools at the versions the examples are built and tested with.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The WIT world every function implements; Python and JavaScript projects build against a copy.
const WIT: &str = include_str!("../../sdk/wit/function.wit");
/// The manifest template, shared by the languages.
const FX_TOML: &str = include_str!("../../sdk/templates/fx.toml");

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

/// The lock of `examples/hello-js`: the JavaScript template pins the same tools.
const JS_LOCK: &str = include_str!("../../examples/hello-js/package-lock.json");
/// The project name in [`JS_LOCK`], replaced by the new project's.
const JS_LOCK_NAME: &str = "\"name\": \"hello-js\"";

/// Flags of `ferrisfx new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The function's language.
    #[arg(long, value_enum)]
    pub lang: Language,
    /// The function's name: its package name, and the folder created unless `--dir` is given.
    /// Lowercase letters, digits and '-', starting with a letter.
    pub name: String,
    /// Where to create the project (must not exist; default `./NAME`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Rust only: a FerrisFX checkout whose `sdk/guest` the crate depends on by path (default:
    /// this binary's own checkout when it still exists, else the git repository).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

/// Creates the project.
pub fn run(args: NewArgs) -> anyhow::Result<()> {
    validate_function_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let guest = guest_dependency(args.sdk.as_deref())?;
    scaffold(args.lang, &args.name, &dir, &guest)?;
    println!(
        "created {} function {} in {}",
        args.lang.display_name(),
        args.name,
        dir.display()
    );
    println!(
        "next: read {} for how to build, package and upload it",
        dir.join("README.md").display()
    );
    Ok(())
}

/// Writes the project of `lang` named `name` into `dir`, which must not exist; `guest` is the
/// TOML value of the Rust guest SDK dependency.
pub fn scaffold(lang: Language, name: &str, dir: &Path, guest: &str) -> anyhow::Result<()> {
    validate_function_name(name)?;
    if dir.exists() {
        bail!(
            "{} already exists: choose another NAME or --dir",
            dir.display()
        );
    }
    let mut files = lang.files();
    files.push(("fx.toml", FX_TOML));
    for (path, template) in files {
        let text = if path == "package-lock.json" {
            template.replace(JS_LOCK_NAME, &format!("\"name\": \"{name}\""))
        } else {
            template
                .replace("{{name}}", name)
                .replace("{{language}}", lang.display_name())
                .replace("{{guest}}", guest)
        };
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
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

/// The `ferrisfx-guest` dependency of a Rust project: by path into `sdk` (a FerrisFX checkout),
/// or into the checkout this binary was built from when it exists, else from the git repository.
pub fn guest_dependency(sdk: Option<&Path>) -> anyhow::Result<String> {
    let checkout = match sdk {
        Some(sdk) => Some(
            std::fs::canonicalize(sdk)
                .with_context(|| format!("--sdk {}: no such folder", sdk.display()))?,
        ),
        None => std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).ok(),
    };
    match checkout {
        Some(root) if root.join("sdk/guest/Cargo.toml").is_file() => {
            let path = root.join("sdk/guest");
            Ok(format!("{{ path = {:?} }}", path.display().to_string()))
        }
        Some(root) if sdk.is_some() => bail!(
            "--sdk {}: not a FerrisFX checkout (no sdk/guest/Cargo.toml)",
            root.display()
        ),
        _ => Ok("{ git = \"https://github.com/ferrisfx/ferrisfx\" }".to_string()),
    }
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
            scaffold(lang, "greeter", &dir, "{ path = \"/sdk/guest\" }").unwrap();
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
        }
        let lock = std::fs::read_to_string(tmp.path().join("Js/package-lock.json")).unwrap();
        assert_eq!(
            lock.matches("\"name\": \"greeter\"").count(),
            2,
            "{lock:.300}"
        );
        let cargo = std::fs::read_to_string(tmp.path().join("Rust/Cargo.toml")).unwrap();
        assert!(cargo.contains("ferrisfx-guest = { path = \"/sdk/guest\" }"));
    }

    #[test]
    fn an_existing_folder_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let err = scaffold(Language::Python, "greeter", tmp.path(), "")
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

    #[test]
    fn this_checkout_is_the_default_guest_sdk() {
        let dep = guest_dependency(None).unwrap();
        assert!(
            dep.starts_with("{ path = ") && dep.contains("sdk/guest"),
            "{dep}"
        );
        let err = guest_dependency(Some(Path::new("/"))).unwrap_err();
        assert!(err.to_string().contains("not a FerrisFX checkout"), "{err}");
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
