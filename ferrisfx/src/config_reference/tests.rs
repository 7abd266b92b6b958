//! The reference and `infra/config/dev.toml` against the settings types: the committed
//! reference is the generated one, and dev.toml lists every key (set, or commented out as
//! `# key = …`) and no key the settings do not have.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::settings::SettingsArgs;

fn workspace_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

const DEV_TOML: &str = "infra/config/dev.toml";

#[test]
fn the_committed_reference_is_the_generated_one() {
    let committed = std::fs::read_to_string(workspace_file(PATH)).unwrap_or_default();
    let generated = render();
    if committed != generated {
        let (line, (ours, theirs)) = generated
            .lines()
            .chain(std::iter::repeat(""))
            .zip(committed.lines().chain(std::iter::repeat("")))
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .unwrap_or((0, ("", "")));
        panic!(
            "{PATH} is stale: the settings' docs changed. Regenerate it, from the workspace root, \
             with\n    {REGENERATE}\nFirst difference, line {}:\n  generated: {ours}\n  \
             committed: {theirs}",
            line + 1
        );
    }
}

#[test]
fn every_key_has_a_doc_and_every_secret_is_marked() {
    let tables = tables(&schema());
    let mut problems = Vec::new();
    let looks_secret = |name: &str| {
        ["token", "password", "secret_key", "api_key"]
            .iter()
            .any(|s| name.ends_with(s))
    };
    for table in &tables {
        if !table.path.is_empty() && table.description.is_empty() {
            problems.push(format!("[{}] has no doc", table.name()));
        }
        let kinds = table.kinds.iter().map(|k| (Some(k), &k.keys));
        let plain = std::iter::once((None, &table.keys));
        for (kind, keys) in plain.chain(kinds) {
            if let Some(kind) = kind {
                if kind.description.is_empty() {
                    problems.push(format!("[{}] kind {} has no doc", table.name(), kind.name));
                }
            }
            for key in keys {
                let name = format!("{}.{}", table.name(), key.name);
                if key.description.is_empty() {
                    problems.push(format!("{name} has no doc"));
                }
                if looks_secret(&key.name) && !key.secret {
                    problems.push(format!(
                        "{name} looks like a secret: mark it \
                         #[schemars(extend(\"writeOnly\" = true))]"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_secret_default_is_never_shown() {
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct WithSecret {
        /// A password.
        #[serde(default = "hunter2")]
        #[schemars(extend("writeOnly" = true))]
        password: String,
        /// A user.
        #[serde(default = "hunter2")]
        user: String,
    }
    fn hunter2() -> String {
        "hunter2".into()
    }
    let schema = schemars::schema_for!(WithSecret).to_value();
    let tables = tables(&schema);
    let keys = &tables[0].keys;
    assert_eq!(keys[0].name, "password");
    assert_eq!(keys[0].default, "unset");
    assert_eq!(keys[0].ty, "string, secret");
    assert_eq!(keys[1].default, "`\"hunter2\"`", "not a secret: shown");
    let rendered = render_tables(&tables);
    assert_eq!(rendered.matches("hunter2").count(), 1, "{rendered}");
}

#[test]
fn environment_variables_join_the_path_with_double_underscores() {
    let tables = tables(&schema());
    let find = |name: &str| tables.iter().find(|t| t.name() == name).unwrap();
    assert_eq!(
        find("executor").env_var("max_concurrency"),
        "FX_EXECUTOR__MAX_CONCURRENCY"
    );
    assert_eq!(
        find("executor.ceilings").env_var("memory_mb"),
        "FX_EXECUTOR__CEILINGS__MEMORY_MB"
    );
    assert_eq!(find("").env_var("data_dir"), "FX_DATA_DIR");
    let bus = find("backends.bus");
    assert_eq!(
        bus.kinds
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>(),
        ["embedded", "kafka"]
    );
    assert!(bus.kinds[0].default && !bus.kinds[1].default);
}

#[test]
fn the_reference_has_no_bare_angle_brackets() {
    // Outside code spans, `<pid>` is an HTML tag to a markdown renderer: it vanishes.
    let rendered = render();
    let bare: Vec<&str> = rendered
        .lines()
        .filter(|line| {
            line.split('`')
                .step_by(2)
                .any(|prose| prose.contains('<') && !prose.trim_start().starts_with("<!--"))
        })
        .collect();
    assert!(bare.is_empty(), "put these in backticks: {bare:#?}");
}

/// One `key = value` line of a settings file, set or commented out (`# key = value`).
#[derive(Debug)]
struct KeyLine {
    /// 1-based.
    number: usize,
    /// The table it is in, `backends.bus`; empty at the top.
    table: String,
    /// The `kind` of the last `kind = "…"` line above it in its table.
    kind: Option<String>,
    key: String,
    value: toml::Value,
}

/// The key lines of `text`: `[table]` headers (or `# [table]`, an optional table shown as an
/// example), then `key = value` or `# key = value` lines (a comment that parses as one key;
/// prose comments do not).
fn key_lines(text: &str) -> Vec<KeyLine> {
    let mut table = String::new();
    let mut kind = None;
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        let commented_header = line
            .strip_prefix('#')
            .map(str::trim)
            .filter(|body| body.ends_with(']') && !body.contains(' '))
            .and_then(|body| body.strip_prefix('['));
        if let Some(header) = line.strip_prefix('[').or(commented_header) {
            table = header.split(']').next().unwrap().trim().to_string();
            kind = None;
            continue;
        }
        let body = line.strip_prefix('#').map_or(line, str::trim);
        if body.is_empty() || body.starts_with(['[', '#']) {
            continue;
        }
        let Ok(parsed) = toml::from_str::<toml::Table>(body) else {
            continue;
        };
        let Some((key, value)) = parsed.into_iter().next() else {
            continue;
        };
        if key == "kind" {
            kind = value.as_str().map(String::from);
        }
        lines.push(KeyLine {
            number: index + 1,
            table: table.clone(),
            kind: kind.clone(),
            key,
            value,
        });
    }
    lines
}

/// Keys of the settings that `text` does not list, set or commented out.
fn unlisted_keys(text: &str) -> Vec<String> {
    let lines = key_lines(text);
    let listed = |table: &str, kind: Option<&str>, key: &str| {
        lines.iter().any(|l| {
            l.table == table && l.key == key && (kind.is_none() || l.kind.as_deref() == kind)
        })
    };
    let mut missing = Vec::new();
    for table in tables(&schema()) {
        let name = table.name();
        let header = if name.is_empty() {
            "at the top".to_string()
        } else {
            format!("under [{name}]")
        };
        for key in &table.keys {
            if !listed(&name, None, &key.name) {
                missing.push(format!("`{} = …` {header}", key.name));
            }
        }
        for kind in &table.kinds {
            if !listed(&name, Some(&kind.name), "kind") {
                missing.push(format!("`kind = \"{}\"` {header}", kind.name));
            }
            for key in &kind.keys {
                if !listed(&name, Some(&kind.name), &key.name) {
                    missing.push(format!(
                        "`{} = …` {header}, after `kind = \"{}\"`",
                        key.name, kind.name
                    ));
                }
            }
        }
    }
    missing
}

/// Lines of `text`, set or commented out, that name a key the settings do not have, and groups
/// of lines (a table, or one `kind` of a tagged table) whose values do not parse as settings.
fn unknown_keys(text: &str) -> Vec<String> {
    let tables = tables(&schema());
    let mut problems = Vec::new();
    let mut groups: BTreeMap<(String, Option<String>), toml::Table> = BTreeMap::new();
    for line in key_lines(text) {
        let Some(table) = tables.iter().find(|t| t.name() == line.table) else {
            problems.push(format!(
                "line {}: `{}` is in [{}], which is no table of the settings",
                line.number, line.key, line.table
            ));
            continue;
        };
        let known = if table.kinds.is_empty() {
            table.keys.iter().any(|k| k.name == line.key)
        } else {
            match table
                .kinds
                .iter()
                .find(|k| Some(&k.name) == line.kind.as_ref())
            {
                None => {
                    problems.push(format!(
                        "line {}: `{}` under [{}] follows no known `kind = \"…\"` line",
                        line.number, line.key, line.table
                    ));
                    continue;
                }
                Some(kind) => line.key == "kind" || kind.keys.iter().any(|k| k.name == line.key),
            }
        };
        if !known {
            problems.push(format!(
                "line {}: [{}] has no key `{}`{}",
                line.number,
                line.table,
                line.key,
                line.kind
                    .as_ref()
                    .map(|k| format!(" for kind = \"{k}\""))
                    .unwrap_or_default()
            ));
            continue;
        }
        let group_kind = (!table.kinds.is_empty())
            .then(|| line.kind.clone())
            .flatten();
        groups
            .entry((line.table.clone(), group_kind))
            .or_default()
            .insert(line.key, line.value);
    }
    // Each group, commented-out lines included, must be valid settings on its own: a wrong
    // type or a missing required key in a commented example fails here.
    for ((table, kind), values) in groups {
        let mut document = values;
        for part in table.split('.').filter(|p| !p.is_empty()).rev() {
            let mut parent = toml::Table::new();
            parent.insert(part.to_string(), toml::Value::Table(document));
            document = parent;
        }
        if let Err(e) = toml::Value::Table(document).try_into::<Settings>() {
            let kind = kind.map(|k| format!(" kind = \"{k}\"")).unwrap_or_default();
            problems.push(format!(
                "the lines of [{table}]{kind}, uncommented, are not valid settings: {e}"
            ));
        }
    }
    problems
}

fn dev_toml() -> String {
    std::fs::read_to_string(workspace_file(DEV_TOML)).unwrap()
}

#[test]
fn dev_toml_lists_every_key() {
    let missing = unlisted_keys(&dev_toml());
    assert!(
        missing.is_empty(),
        "{DEV_TOML} must list every key of the settings, set or commented out (`# key = …`), \
         with a short comment; missing:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn dev_toml_lists_no_unknown_key_even_commented_out() {
    let problems = unknown_keys(&dev_toml());
    assert!(
        problems.is_empty(),
        "{DEV_TOML}:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn dev_toml_sets_exactly_the_defaults() {
    let args = SettingsArgs {
        config: Some(workspace_file(DEV_TOML)),
        data_dir: None,
        port: None,
    };
    let settings = Settings::load(&args).unwrap();
    let defaults = Settings::default();
    assert_eq!(settings.data_dir, defaults.data_dir);
    assert_eq!(settings.listen, defaults.listen);
    assert_eq!(settings.example, defaults.example);
    assert_eq!(settings.backends, defaults.backends);
    assert_eq!(settings.gateway, defaults.gateway);
    assert_eq!(settings.executor, defaults.executor);
    assert_eq!(settings.server, defaults.server);
    assert_eq!(settings.ops, defaults.ops);
}

#[test]
fn the_checks_catch_a_missing_key_and_a_commented_typo() {
    let text = "[executor]\n# max_concurency = 3\n\n[backends.bus]\nkind = \"embedded\"\n\
                # kind = \"kafka\"\n# brokers = 9092\n";
    let missing = unlisted_keys(text);
    assert!(
        missing
            .iter()
            .any(|m| m.starts_with("`max_concurrency = …` under [executor]")),
        "{missing:#?}"
    );
    assert!(
        missing
            .iter()
            .any(|m| m == "`capacity = …` under [backends.bus], after `kind = \"embedded\"`"),
        "{missing:#?}"
    );
    let unknown = unknown_keys(text);
    assert!(
        unknown
            .iter()
            .any(|p| p.contains("no key `max_concurency`")),
        "{unknown:#?}"
    );
    assert!(
        unknown
            .iter()
            .any(|p| p.contains("[backends.bus] kind = \"kafka\"")),
        "brokers must be a string: {unknown:#?}"
    );
    let prose = "# Where the files go, e.g. FX_DATA_DIR=/tmp/fx.\ndata_dir = \".fx-data\"\n";
    assert!(unknown_keys(prose).is_empty(), "{:#?}", unknown_keys(prose));
}
