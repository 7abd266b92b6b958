//! Declarative configuration: a project file (`ferrisfx.yaml`) naming the handlers,
//! workflows, schedules, webhooks, command bundles and notification rules a team keeps in git,
//! and the function packages `ferrisfx deploy` builds.
//!
//! `ferrisfx diff` compares the file with the platform and prints the plan; `ferrisfx apply`
//! prints it and carries it out: creates what is missing, replaces what differs with
//! check-and-set (`If-Match` with the revision the plan read, so an edit made by someone else
//! in between fails the apply with the reason instead of being overwritten), and with
//! `--prune` deletes what the file no longer names, within the kinds the file declares (a
//! `schedules:` key, even empty, declares schedules; a kind the file leaves out is never
//! touched). Applying the same file twice changes nothing the second time. `ferrisfx export`
//! writes the platform's state in the same format, every kind declared.
//!
//! Each entry is written exactly as the REST API takes it (the `handler create --file` JSON,
//! in YAML), with one shorthand: a handler's `package` may be `name` or `name@version`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use fx_core::registry::Entry;
use serde::Deserialize;
use serde_json::Value;

use crate::client::Api;
use crate::exit::Failure;

/// The project file `deploy`, `apply` and `diff` read when not told otherwise.
pub const DEFAULT_FILE: &str = "ferrisfx.yaml";

/// A kind of registry entry the project file declares.
#[derive(Clone, Copy)]
pub struct Kind {
    /// Singular, as in messages and in the API's entry views (`handler`).
    pub kind: &'static str,
    /// The file's key and the API's collection (`handlers`).
    pub collection: &'static str,
    /// Parses, validates and re-encodes one entry, so that equal entries compare equal
    /// whatever defaults the file leaves out; answers its name and canonical JSON.
    normalize: fn(Value) -> anyhow::Result<(String, Value)>,
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.collection)
    }
}

impl PartialEq for Kind {
    fn eq(&self, other: &Self) -> bool {
        self.collection == other.collection
    }
}

fn normalize<T: Entry>(value: Value) -> anyhow::Result<(String, Value)> {
    let entry: T = serde_json::from_value(value)?;
    entry.validate()?;
    Ok((entry.name().to_string(), serde_json::to_value(&entry)?))
}

fn kind<T: Entry>() -> Kind {
    Kind {
        kind: T::KIND,
        collection: T::COLLECTION,
        normalize: normalize::<T>,
    }
}

/// Every kind, in the order they are created and updated: handlers before what runs or
/// watches them. Deletes go in the reverse order.
pub fn kinds() -> [Kind; 6] {
    [
        kind::<fx_core::handler::Handler>(),
        kind::<fx_core::workflow::Workflow>(),
        kind::<fx_core::schedule::Schedule>(),
        kind::<fx_core::hook::Hook>(),
        kind::<fx_core::chat::Bundle>(),
        kind::<fx_core::notify::Rule>(),
    ]
}

/// A function package the project builds (`path`, by `deploy`) or ships built (`file`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSource {
    /// A function project folder (fx.toml and the sources), relative to the project file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A built `.fxpkg` archive, relative to the project file.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// A project file, read and checked.
#[derive(Debug, Clone)]
pub struct Project {
    /// The folder paths in the file are relative to.
    pub base: PathBuf,
    /// The packages it builds or ships.
    pub packages: Vec<PackageSource>,
    /// The kinds it declares with their entries (name, canonical JSON), in [`kinds`] order.
    pub entries: Vec<(Kind, Vec<(String, Value)>)>,
}

impl Project {
    /// Reads the project file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Project> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading {}: no project file (write one, or make one with `ferrisfx export > {DEFAULT_FILE}`)",
                path.display()
            )
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Project::parse(&text, base).with_context(|| format!("checking {}", path.display()))
    }

    /// Parses a project file's text; `base` is the folder its paths are relative to.
    pub fn parse(text: &str, base: PathBuf) -> anyhow::Result<Project> {
        let document: Value = serde_yaml_ng::from_str(text).context("not valid YAML")?;
        let mut top = match document {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            _ => bail!("the file must be a mapping of kinds (handlers:, schedules:, …)"),
        };
        let packages = match top.remove("packages") {
            None | Some(Value::Null) => Vec::new(),
            Some(list) => {
                let packages: Vec<PackageSource> =
                    serde_json::from_value(list).context("packages")?;
                for (i, p) in packages.iter().enumerate() {
                    if p.path.is_some() == p.file.is_some() {
                        bail!("packages[{i}]: give exactly one of `path` (a function folder) or `file` (a built .fxpkg)");
                    }
                }
                packages
            }
        };
        let mut entries = Vec::new();
        for kind in kinds() {
            let Some(list) = top.remove(kind.collection) else {
                continue;
            };
            let items = match list {
                Value::Null => Vec::new(),
                Value::Array(items) => items,
                _ => bail!("{}: must be a list", kind.collection),
            };
            let mut seen = BTreeMap::new();
            let mut declared = Vec::new();
            for (i, mut item) in items.into_iter().enumerate() {
                let label = item.get("name").and_then(Value::as_str).map_or_else(
                    || format!("{}[{i}]", kind.collection),
                    |n| format!("{}[{i}] ({n})", kind.collection),
                );
                if kind.collection == "handlers" {
                    expand_package(&mut item);
                }
                let (name, value) = (kind.normalize)(item)
                    .with_context(|| format!("{label}: not a valid {}", kind.kind))?;
                if let Some(first) = seen.insert(name.clone(), i) {
                    bail!(
                        "{label}: {} {name:?} is declared twice (also at {}[{first}])",
                        kind.kind,
                        kind.collection
                    );
                }
                declared.push((name, value));
            }
            entries.push((kind, declared));
        }
        if let Some(unknown) = top.keys().next() {
            let known: Vec<&str> = std::iter::once("packages")
                .chain(kinds().iter().map(|k| k.collection))
                .collect();
            bail!(
                "unknown key {unknown:?}: a project file holds {}",
                known.join(", ")
            );
        }
        Ok(Project {
            base,
            packages,
            entries,
        })
    }
}

/// A handler's `package: name` or `name@version` shorthand, expanded to the API's form.
fn expand_package(handler: &mut Value) {
    if let Some(text) = handler.get("package").and_then(Value::as_str) {
        let package = match text.split_once('@') {
            Some((name, version)) => serde_json::json!({"name": name, "version": version}),
            None => serde_json::json!({"name": text}),
        };
        handler["package"] = package;
    }
}

/// What the plan does with one entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// It is missing: create it.
    Create(Value),
    /// It differs: replace it if it is still at `revision` (`None`: the stored entry is
    /// invalid and has no usable revision; replaced whatever it is).
    Update {
        /// The revision read.
        revision: Option<u64>,
        /// What is stored.
        before: Value,
        /// What the file says.
        after: Value,
    },
    /// The file no longer names it (`--prune`): delete it if still at `revision`.
    Delete {
        /// The revision read.
        revision: Option<u64>,
        /// What is stored (null for an invalid entry).
        before: Value,
    },
    /// It is as the file says.
    Unchanged,
}

/// One entry's change.
#[derive(Debug, Clone)]
pub struct Change {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// What to do.
    pub action: Action,
}

/// What applying a project file would change, in the order it is done.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every entry of the declared kinds, changed or not.
    pub changes: Vec<Change>,
}

impl Plan {
    /// Whether applying it changes anything.
    pub fn is_empty(&self) -> bool {
        self.changes
            .iter()
            .all(|c| matches!(c.action, Action::Unchanged))
    }

    /// How many creates, updates, deletes and unchanged entries.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut counts = (0, 0, 0, 0);
        for change in &self.changes {
            match change.action {
                Action::Create(_) => counts.0 += 1,
                Action::Update { .. } => counts.1 += 1,
                Action::Delete { .. } => counts.2 += 1,
                Action::Unchanged => counts.3 += 1,
            }
        }
        counts
    }

    /// The plan for people: one line per change (with the fields an update changes, and with
    /// `detail` their old and new values), then the counts.
    pub fn render(&self, detail: bool) -> String {
        let mut out = String::new();
        for change in &self.changes {
            let (sign, what) = match &change.action {
                Action::Create(_) => ('+', "create"),
                Action::Update { .. } => ('~', "update"),
                Action::Delete { .. } => ('-', "delete"),
                Action::Unchanged => continue,
            };
            let _ = write!(out, "{sign} {} {} ({what}", change.kind.kind, change.name);
            match &change.action {
                Action::Update { before, after, .. } => {
                    let fields = changed_fields(before, after);
                    let _ = writeln!(out, ": {})", fields.join(", "));
                    if detail {
                        for field in fields {
                            let old = before.get(&field).map_or("(none)".into(), compact);
                            let new = after.get(&field).map_or("(none)".into(), compact);
                            let _ = writeln!(out, "    {field}: {old} -> {new}");
                        }
                    }
                }
                Action::Create(value) if detail => {
                    let _ = writeln!(out, ")");
                    let _ = writeln!(out, "    {}", compact(value));
                }
                _ => {
                    let _ = writeln!(out, ")");
                }
            }
        }
        let (create, update, delete, same) = self.counts();
        if self.is_empty() {
            let entries = if same == 1 { "entry" } else { "entries" };
            let _ = writeln!(out, "no changes ({same} {entries} as the file says)");
        } else {
            let _ = writeln!(
                out,
                "{create} to create, {update} to update, {delete} to delete, {same} unchanged"
            );
        }
        out
    }
}

/// The top-level fields that differ between two entries, sorted.
fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut fields: Vec<String> = b
        .keys()
        .chain(a.keys())
        .filter(|k| b.get(*k) != a.get(*k))
        .cloned()
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

/// One line of JSON, cut at 200 characters.
fn compact(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// What the platform holds of one kind: name → (revision, canonical JSON or null if invalid).
type Current = BTreeMap<String, (Option<u64>, Value)>;

/// Reads what the platform holds of `kind`.
async fn current(api: &Api, kind: Kind) -> anyhow::Result<Current> {
    let listing = api
        .send(api.http().get(api.url(&format!("/{}", kind.collection))))
        .await
        .with_context(|| format!("reading the {}", kind.collection))?;
    let mut entries = Current::new();
    for item in listing[kind.collection].as_array().into_iter().flatten() {
        let (name, value) = (kind.normalize)(item[kind.kind].clone()).with_context(|| {
            format!(
                "the server listed a {} this client cannot read (is it newer?)",
                kind.kind
            )
        })?;
        entries.insert(name, (item["revision"].as_u64(), value));
    }
    for invalid in listing["invalid"].as_array().into_iter().flatten() {
        if let Some(name) = invalid["name"].as_str() {
            entries.insert(name.to_string(), (None, Value::Null));
        }
    }
    Ok(entries)
}

/// Compares the project with the platform. With `prune`, what the platform holds of a
/// declared kind and the file does not name is deleted.
pub async fn plan(api: &Api, project: &Project, prune: bool) -> anyhow::Result<Plan> {
    let mut creates_updates = Vec::new();
    let mut deletes = Vec::new();
    for (kind, declared) in &project.entries {
        let mut held = current(api, *kind).await?;
        for (name, after) in declared {
            let action = match held.remove(name) {
                None => Action::Create(after.clone()),
                Some((_, before)) if &before == after => Action::Unchanged,
                Some((revision, before)) => Action::Update {
                    revision,
                    before,
                    after: after.clone(),
                },
            };
            creates_updates.push(Change {
                kind: *kind,
                name: name.clone(),
                action,
            });
        }
        if prune {
            let mut gone: Vec<Change> = held
                .into_iter()
                .map(|(name, (revision, before))| Change {
                    kind: *kind,
                    name,
                    action: Action::Delete { revision, before },
                })
                .collect();
            gone.reverse();
            deletes.push(gone);
        }
    }
    // Deletes last, the kinds in reverse: a bundle goes before the handler it runs.
    let mut changes = creates_updates;
    changes.extend(deletes.into_iter().rev().flatten());
    Ok(Plan { changes })
}

/// Carries out `plan`, printing each change as it is done to `out`. Stops at the first
/// failure: a conflict (someone changed an entry since the plan read it) names the entry and
/// what to do.
pub async fn execute(api: &Api, plan: &Plan, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let mut done = 0;
    for change in &plan.changes {
        let result = apply_one(api, change).await;
        if let Err(e) = result {
            let conflict =
                crate::exit::status(&e).is_some_and(|s| s.as_u16() == 409 || s.as_u16() == 412);
            let hint = if conflict && matches!(change.action, Action::Create(_)) {
                format!(
                    "{} {:?} was created on the server since the plan was made (someone else made it): nothing of theirs was overwritten; run `ferrisfx diff` to see it, then apply again",
                    change.kind.kind, change.name
                )
            } else if conflict {
                format!(
                    "{} {:?} changed on the server since the plan was made (someone else edited it): nothing of theirs was overwritten; run `ferrisfx diff` to see their change, then apply again",
                    change.kind.kind, change.name
                )
            } else {
                format!(
                    "{} {:?} could not be written",
                    change.kind.kind, change.name
                )
            };
            return Err(e.context(format!("{hint} ({done} change(s) applied before it)")));
        }
        let verb = match change.action {
            Action::Create(_) => "created",
            Action::Update { .. } => "updated",
            Action::Delete { .. } => "deleted",
            Action::Unchanged => continue,
        };
        done += 1;
        writeln!(out, "{} {} {verb}", change.kind.kind, change.name)?;
    }
    Ok(())
}

async fn apply_one(api: &Api, change: &Change) -> anyhow::Result<()> {
    let collection = format!("/{}", change.kind.collection);
    let with_revision = |request: reqwest::RequestBuilder, revision: Option<u64>| match revision {
        Some(revision) => request.header("if-match", format!("\"{revision}\"")),
        None => request,
    };
    match &change.action {
        Action::Create(value) => {
            api.send(api.http().post(api.url(&collection)).json(value))
                .await?;
        }
        Action::Update {
            revision, after, ..
        } => {
            let url = api.entry_url(&collection, &change.name)?;
            api.send(with_revision(api.http().put(url), *revision).json(after))
                .await?;
        }
        Action::Delete { revision, .. } => {
            let url = api.entry_url(&collection, &change.name)?;
            api.send(with_revision(api.http().delete(url), *revision))
                .await?;
        }
        Action::Unchanged => {}
    }
    Ok(())
}

/// The platform's state as a project file: every kind declared (so that `apply --prune` of
/// the export puts a platform back as it was), entries by name.
pub async fn export(api: &Api, server: &str) -> anyhow::Result<String> {
    // A YAML mapping keeps the order it is built in: kinds in apply order, each entry's
    // name first.
    let mut document = serde_yaml_ng::Mapping::new();
    for kind in kinds() {
        let held = current(api, kind).await?;
        let mut entries = Vec::new();
        for (_, value) in held.into_values() {
            let Value::Object(fields) = value else {
                continue; // an invalid entry: nothing to export
            };
            let mut entry = serde_yaml_ng::Mapping::new();
            let mut fields: Vec<(String, Value)> = fields.into_iter().collect();
            fields.sort_by_key(|(key, _)| key != "name");
            for (key, field) in fields {
                entry.insert(key.into(), serde_yaml_ng::to_value(field)?);
            }
            entries.push(serde_yaml_ng::Value::Mapping(entry));
        }
        document.insert(kind.collection.into(), entries.into());
    }
    let yaml = serde_yaml_ng::to_string(&document).context("writing YAML")?;
    Ok(format!(
        "# FerrisFX project file, exported from {server} at {} by `ferrisfx export`.\n\
         # Apply it with `ferrisfx apply -f FILE` (add --prune to delete what it does not name).\n\
         # Packages are not exported: list their folders under `packages:` for `ferrisfx deploy`.\n{yaml}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    ))
}

/// Flags of `ferrisfx apply` and `ferrisfx diff`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The project file.
    #[arg(short = 'f', long = "file", default_value = DEFAULT_FILE)]
    pub file: PathBuf,
    /// Also delete what the platform holds of a kind the file declares and the file does not
    /// name.
    #[arg(long)]
    pub prune: bool,
}

/// `ferrisfx apply`: prints the plan, then carries it out.
pub async fn apply(api: &Api, args: &ApplyArgs, dry_run: bool) -> anyhow::Result<()> {
    let project = Project::load(&args.file)?;
    apply_project(api, &project, args.prune, dry_run).await
}

/// Plans and applies `project`, printing the plan and each change.
pub async fn apply_project(
    api: &Api,
    project: &Project,
    prune: bool,
    dry_run: bool,
) -> anyhow::Result<()> {
    upload_files(api, project).await?;
    let plan = plan(api, project, prune).await?;
    print!("{}", plan.render(false));
    if dry_run || plan.is_empty() {
        return Ok(());
    }
    let mut stdout = std::io::stdout();
    execute(api, &plan, &mut stdout).await
}

/// Uploads the project's built archives (`packages: - file:`) the server does not hold yet.
async fn upload_files(api: &Api, project: &Project) -> anyhow::Result<()> {
    for source in &project.packages {
        let Some(file) = &source.file else { continue };
        let path = project.base.join(file);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let outcome = crate::deploy::ensure_package(api, bytes, false)
            .await
            .with_context(|| format!("uploading {}", path.display()))?;
        println!("{outcome}");
    }
    Ok(())
}

/// Flags of `ferrisfx diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The file and pruning, as for apply.
    #[command(flatten)]
    pub apply: ApplyArgs,
    /// Exit with status 9 when there are differences (0 when none).
    #[arg(long)]
    pub exit_code: bool,
}

/// `ferrisfx diff`: prints the plan with each changed field's old and new value.
pub async fn diff(api: &Api, args: &DiffArgs) -> anyhow::Result<()> {
    let project = Project::load(&args.apply.file)?;
    let plan = plan(api, &project, args.apply.prune).await?;
    print!("{}", plan.render(true));
    if args.exit_code && !plan.is_empty() {
        return Err(Failure::Differences.into());
    }
    Ok(())
}

/// Flags of `ferrisfx export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `ferrisfx export`.
pub async fn export_command(api: &Api, server: &str, args: &ExportArgs) -> anyhow::Result<()> {
    let text = export(api, server).await?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
packages:
  - path: .
handlers:
  - name: greeter
    package: greeter
    filter: {exact: {attribute: type, value: com.example.hello}}
  - name: pinned
    package: greeter@1.0.0
    filter: {prefix: {attribute: source, value: /shop}}
    config: {a: "1"}
schedules: []
"#;

    #[test]
    fn a_project_file_is_read_with_its_shorthands_and_defaults() {
        let project = Project::parse(FILE, PathBuf::from("/p")).unwrap();
        assert_eq!(project.packages[0].path.as_deref(), Some(Path::new(".")));
        let collections: Vec<&str> = project.entries.iter().map(|(k, _)| k.collection).collect();
        assert_eq!(collections, ["handlers", "schedules"]);
        let handlers = &project.entries[0].1;
        assert_eq!(handlers[0].0, "greeter");
        assert_eq!(
            handlers[0].1["package"],
            serde_json::json!({"name": "greeter", "version": "latest"})
        );
        assert_eq!(handlers[0].1["pool"], "default");
        assert_eq!(handlers[1].1["package"]["version"], "1.0.0");
        assert!(project.entries[1].1.is_empty());
    }

    #[test]
    fn mistakes_in_a_project_file_are_named() {
        let cases = [
            ("handler: []", "unknown key \"handler\""),
            ("handlers: {a: 1}", "handlers: must be a list"),
            (
                "handlers:\n  - name: x\n    package: p\n",
                "handlers[0] (x): not a valid handler",
            ),
            (
                "handlers:\n  - {name: x, package: p, filter: {all: []}}\n  - {name: x, package: p, filter: {all: []}}\n",
                "declared twice",
            ),
            ("packages:\n  - {}\n", "exactly one of `path`"),
            ("- a\n", "must be a mapping"),
        ];
        for (text, want) in cases {
            let err = format!(
                "{:#}",
                Project::parse(text, PathBuf::from(".")).unwrap_err()
            );
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_plan_names_the_fields_an_update_changes() {
        let handler = |config: &str| serde_json::json!({"name": "h", "package": {"name": "p", "version": "latest"}, "config": {"k": config}});
        let kind = kinds()[0];
        let plan = Plan {
            changes: vec![
                Change {
                    kind,
                    name: "a".into(),
                    action: Action::Create(handler("1")),
                },
                Change {
                    kind,
                    name: "h".into(),
                    action: Action::Update {
                        revision: Some(3),
                        before: handler("1"),
                        after: handler("2"),
                    },
                },
                Change {
                    kind,
                    name: "old".into(),
                    action: Action::Delete {
                        revision: Some(2),
                        before: Value::Null,
                    },
                },
                Change {
                    kind,
                    name: "same".into(),
                    action: Action::Unchanged,
                },
            ],
        };
        let text = plan.render(true);
        assert!(text.contains("+ handler a (create)"), "{text}");
        assert!(text.contains("~ handler h (update: config)"), "{text}");
        assert!(text.contains(r#"config: {"k":"1"} -> {"k":"2"}"#), "{text}");
        assert!(text.contains("- handler old (delete)"), "{text}");
        assert!(
            text.contains("1 to create, 1 to update, 1 to delete, 1 unchanged"),
            "{text}"
        );
        assert!(!plan.is_empty());
        let same = Plan {
            changes: vec![Change {
                kind,
                name: "s".into(),
                action: Action::Unchanged,
            }],
        };
        assert!(same.is_empty());
        assert!(same.render(false).contains("no changes"));
    }
}
