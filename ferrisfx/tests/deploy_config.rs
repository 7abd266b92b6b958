//! No drift between the deployment files and the code: every FerrisFX container that the Helm
//! chart (`charts/ferrisfx`) and the compose file (`infra/compose.yaml`) start must start with
//! arguments the CLI accepts and settings (the rendered settings file plus the `FX_*`
//! variables) that `ferrisfx` loads. Settings refuse unknown keys, so a key the chart or the
//! compose file sets and the code does not read fails here, naming the key.
//!
//! `infra/scripts/check-deploy.sh` (run by the test command before `cargo test`) renders the
//! chart with `helm` and writes what each container runs to `target/deploy-rendered/
//! processes.json`; this test runs the real binary on each: `ferrisfx ARGS --help` (the
//! subcommand and its flags parse) and `ferrisfx check-config` with that environment only.
//! Without the file the test says it skipped; under `CI=true` that is a failure.

// Test helpers fail by panicking.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde::Deserialize;

/// One container as the chart or the compose file starts it.
#[derive(Debug, Deserialize)]
struct Process {
    /// Where it comes from, e.g. `chart-drift-default.yaml:Deployment/fx-ferrisfx-server`.
    source: String,
    /// Its arguments; `{config}` stands for the settings file.
    args: Vec<String>,
    /// The settings file it reads, if any.
    config: Option<String>,
    /// Its environment.
    env: BTreeMap<String, String>,
}

fn rendered() -> Option<Vec<Process>> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/deploy-rendered/processes.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).unwrap()),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "{} is missing, and CI=true forbids skipping: run infra/scripts/check-deploy.sh (the test command does)",
            path.display()
        ),
        Err(_) => {
            eprintln!(
                "skipped: {} is missing (infra/scripts/check-deploy.sh renders it)",
                path.display()
            );
            None
        }
    }
}

fn ferrisfx(args: &[String], env: &BTreeMap<String, String>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrisfx"))
        .args(args)
        .env_clear()
        .envs(env)
        .output()
        .unwrap()
}

/// Checks one process; the reason when it would not start.
fn check(process: &Process, dir: &tempfile::TempDir) -> Result<(), String> {
    let config = dir.path().join("ferrisfx.toml");
    if let Some(text) = &process.config {
        std::fs::write(&config, text).unwrap();
    }
    let config = config.display().to_string();
    let args: Vec<String> = process
        .args
        .iter()
        .map(|a| {
            if a == "{config}" {
                config.clone()
            } else {
                a.clone()
            }
        })
        .collect();
    let mut help = args.clone();
    help.push("--help".into());
    let parsed = ferrisfx(&help, &BTreeMap::new());
    if !parsed.status.success() {
        return Err(format!(
            "`ferrisfx {}` does not parse: {}",
            args.join(" "),
            String::from_utf8_lossy(&parsed.stderr)
        ));
    }
    let mut check = vec!["check-config".to_string()];
    if process.config.is_some() {
        check.extend(["--config".to_string(), config]);
    }
    let loaded = ferrisfx(&check, &process.env);
    if !loaded.status.success() {
        return Err(format!(
            "its settings do not load: {}",
            String::from_utf8_lossy(&loaded.stderr).trim()
        ));
    }
    Ok(())
}

#[test]
fn every_container_of_the_chart_and_the_compose_file_starts_with_settings_the_code_reads() {
    let Some(processes) = rendered() else {
        return;
    };
    assert!(
        processes.iter().any(|p| p.source.starts_with("compose:"))
            && processes.iter().any(|p| p.source.starts_with("chart-")),
        "processes.json lists neither the compose file's nor the chart's containers"
    );
    let dir = tempfile::tempdir().unwrap();
    let failures: Vec<String> = processes
        .iter()
        .filter_map(|p| check(p, &dir).err().map(|e| format!("{}: {e}", p.source)))
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_key_the_code_does_not_read_fails_the_check() {
    let Some(processes) = rendered() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut process = processes
        .into_iter()
        .find(|p| p.source.starts_with("compose:"))
        .unwrap();
    process
        .env
        .insert("FX_BACKENDS__BUS__BROKER".into(), "kafka:9092".into());
    let err = check(&process, &dir).unwrap_err();
    assert!(err.contains("broker"), "{err}");
    process.env.remove("FX_BACKENDS__BUS__BROKER");
    process.args.push("--no-such-flag".into());
    let err = check(&process, &dir).unwrap_err();
    assert!(err.contains("does not parse"), "{err}");
}
