//! `ferrisfx workflow`: create, import, list, show and delete workflows on the management
//! server, start runs (and wait for them), list runs, show one with its steps and outputs,
//! cancel and re-drive. A workflow is a graph of steps, each running a package or a handler
//! once the steps it depends on are done; definitions are written as JSON or YAML
//! (`fx_core::workflow::Workflow`), or imported from Gorchestrator's adjacency-matrix form.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fx_core::workflow::Workflow;
use serde_json::{json, Value};

use crate::client::Api;
use crate::output::{self, cell, time, ListArgs, ShowArgs, Table, View};

/// Workflow commands.
#[derive(Debug, clap::Subcommand)]
pub enum WorkflowCommand {
    /// Create a workflow from a JSON or YAML file (checked here first: names, dependencies,
    /// cycles); prints its layers.
    Create {
        /// The definition: name, steps [{name, package or handler, after}], on_failure,
        /// trigger.
        #[arg(long)]
        file: PathBuf,
        /// Replace the workflow of that name (or create it) instead of refusing an existing
        /// one.
        #[arg(long)]
        replace: bool,
    },
    /// Import a workflow from Gorchestrator's adjacency-matrix form (`{"name", "steps",
    /// "packages", "matrix"}`, `matrix[i][j] == 1`: step j runs after step i).
    Import(ImportArgs),
    /// List the workflows: steps, layers, failure policy and trigger.
    List(ListArgs),
    /// Show one workflow: its definition, revision and layers (JSON by default; `-o table`
    /// for its row of the list).
    Show {
        /// Workflow name.
        name: String,
        /// Output format.
        #[command(flatten)]
        output: ShowArgs,
    },
    /// Delete a workflow (its runs stay readable).
    Delete {
        /// Workflow name.
        name: String,
    },
    /// Start a run of a workflow; prints the run's id (and with --wait, how its steps ended).
    Run(RunArgs),
    /// List runs, newest first.
    Runs(RunsArgs),
    /// Show a run: its steps with their status, reason and executions (`-o json|yaml`: the
    /// API's document, outputs included).
    Status {
        /// Run id.
        id: String,
        /// Also print the outputs of the succeeded steps.
        #[arg(long)]
        outputs: bool,
        /// Output format.
        #[command(flatten)]
        output: ShowArgs,
    },
    /// Cancel a running run: no step starts any more (running ones finish).
    Cancel {
        /// Run id.
        id: String,
    },
    /// Re-drive a failed or cancelled run from the steps that did not succeed.
    Redrive {
        /// Run id.
        id: String,
        /// Wait until the run finishes; fail unless it succeeds.
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// Flags of `ferrisfx workflow import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The Gorchestrator file (JSON): name, steps, packages, matrix.
    #[arg(long)]
    pub matrix: PathBuf,
    /// The workflow's name (instead of the file's `name`).
    #[arg(long)]
    pub name: Option<String>,
    /// Print the converted workflow instead of creating it (to edit it, then `create
    /// --file`).
    #[arg(long)]
    pub print: bool,
    /// What --print writes.
    #[arg(long, value_enum, default_value_t = Format::Yaml, requires = "print")]
    pub format: Format,
}

/// How `import --print` writes a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// Flags of `ferrisfx workflow run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Workflow name.
    pub name: String,
    /// The run's input, JSON (every step receives it as `input`).
    #[arg(long, conflicts_with = "input_file")]
    pub input: Option<String>,
    /// Read the run's input (JSON) from this file (`-`: standard input).
    #[arg(long)]
    pub input_file: Option<PathBuf>,
    /// An idempotency key: a second run with the same key starts nothing and answers the
    /// first run.
    #[arg(long)]
    pub key: Option<String>,
    /// Wait until the run finishes; fail unless it succeeds.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `--wait [--timeout <secs>]`.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Wait until the run finishes, print how each step ended, and exit non-zero unless the
    /// run succeeded.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600, requires = "wait")]
    pub timeout: u64,
}

/// Flags of `ferrisfx workflow runs`.
#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Only this workflow's runs.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only runs in this status: running, succeeded, failed or cancelled.
    #[arg(long)]
    pub status: Option<String>,
    /// How many.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Continue after this cursor (printed under a full page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Output format and watching.
    #[command(flatten)]
    pub list: ListArgs,
}

/// Gorchestrator's adjacency-matrix form of a workflow.
#[derive(Debug, serde::Deserialize)]
struct Matrix {
    #[serde(default)]
    name: Option<String>,
    steps: Vec<String>,
    packages: Vec<String>,
    matrix: Vec<Vec<u8>>,
}

/// Runs a workflow command against `api`, printing to standard output.
pub async fn run(api: &Api, command: WorkflowCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    execute(api, command, &mut out).await
}

/// Runs a workflow command against `api`, writing what it says to `out`.
pub async fn execute(
    api: &Api,
    command: WorkflowCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        WorkflowCommand::Create { file, replace } => {
            let workflow = workflow_of_file(&file)?;
            create(api, &workflow, replace, out).await?;
        }
        WorkflowCommand::Import(args) => {
            let workflow = workflow_of_matrix(&args.matrix, args.name.as_deref())?;
            if args.print {
                let text = match args.format {
                    Format::Yaml => to_yaml(&printable(&workflow)?)?,
                    Format::Json => format!(
                        "{}\n",
                        serde_json::to_string_pretty(&Ordered(&printable(&workflow)?))?
                    ),
                };
                write!(out, "{text}")?;
            } else {
                create(api, &workflow, false, out).await?;
            }
        }
        WorkflowCommand::List(args) => {
            output::list(
                &args,
                "ferrisfx workflow list",
                || api.send(api.http().get(api.url("/workflows"))),
                &table,
                out,
            )
            .await?;
        }
        WorkflowCommand::Show { name, output } => {
            output::show(
                output.output.unwrap_or(output::Format::Json),
                api.send(api.http().get(one(api, &name)?)),
                &|v| table(&json!({ "workflows": [v] })),
                out,
            )
            .await?;
        }
        WorkflowCommand::Delete { name } => {
            api.send(api.http().delete(one(api, &name)?)).await?;
            writeln!(out, "deleted workflow {name}")?;
        }
        WorkflowCommand::Run(args) => {
            let input = input_of(&args)?;
            let mut body = json!({});
            if let Some(input) = input {
                body["input"] = input;
            }
            if let Some(key) = &args.key {
                body["key"] = Value::String(key.clone());
            }
            let mut url = one(api, &args.name)?;
            url.path_segments_mut()
                .map_err(|()| anyhow::anyhow!("the server's URL cannot take a path"))?
                .push("runs");
            let v = api.send(api.http().post(url).json(&body)).await?;
            let id = v["run"]
                .as_str()
                .context("the server answered no run id")?
                .to_string();
            writeln!(out, "{id}")?;
            if v["created"].as_bool() == Some(false) {
                writeln!(
                    out,
                    "  (key {:?} names a run already started: nothing new started)",
                    args.key.as_deref().unwrap_or_default()
                )?;
            }
            if args.wait.wait {
                out.flush()?;
                wait(api, &id, &args.wait, out).await?;
            }
        }
        WorkflowCommand::Runs(args) => {
            let mut query = vec![("limit", args.limit.to_string())];
            query.extend(args.workflow.map(|w| ("workflow", w)));
            query.extend(args.status.map(|s| ("status", s)));
            query.extend(args.cursor.map(|c| ("cursor", c)));
            output::list(
                &args.list,
                "ferrisfx workflow runs",
                || api.send(api.http().get(api.url("/runs")).query(&query)),
                &runs_table,
                out,
            )
            .await?;
        }
        WorkflowCommand::Status {
            id,
            outputs,
            output,
        } => {
            let v = api.send(api.http().get(run_url(api, &id, None)?)).await?;
            if let Some(format @ (output::Format::Json | output::Format::Yaml)) = output.output {
                return output::emit(&output::render(format, &v, &|_| View::default())?, out);
            }
            write_run(out, &v)?;
            if outputs {
                writeln!(out, "outputs:")?;
                let outputs = v["outputs"].as_object().cloned().unwrap_or_default();
                if outputs.is_empty() {
                    writeln!(out, "  (none: no step succeeded)")?;
                }
                for (step, output) in &outputs {
                    writeln!(out, "  {step}: {output}")?;
                }
            }
        }
        WorkflowCommand::Cancel { id } => {
            let v = api
                .send(api.http().post(run_url(api, &id, Some("cancel"))?))
                .await?;
            writeln!(
                out,
                "cancelled run {id} of workflow {}: no step starts any more{}",
                v["run"]["workflow"].as_str().unwrap_or("?"),
                if v["run"]["finished_at"].is_string() {
                    ""
                } else {
                    " (running steps finish)"
                }
            )?;
        }
        WorkflowCommand::Redrive { id, wait: waiting } => {
            let v = api
                .send(api.http().post(run_url(api, &id, Some("redrive"))?))
                .await?;
            let again: Vec<&str> = steps_of(&v)
                .iter()
                .filter(|s| s["status"] != "succeeded")
                .filter_map(|s| s["name"].as_str())
                .collect();
            writeln!(
                out,
                "re-driving run {id} of workflow {} (generation {}): {}",
                v["run"]["workflow"].as_str().unwrap_or("?"),
                v["run"]["generation"].as_u64().unwrap_or_default(),
                if again.is_empty() {
                    "no step to run again".to_string()
                } else {
                    format!("again {}", again.join(", "))
                }
            )?;
            if waiting.wait {
                out.flush()?;
                wait(api, &id, &waiting, out).await?;
            }
        }
    }
    Ok(())
}

/// Creates (or with `replace`, writes) `workflow`; prints its revision and layers.
async fn create(
    api: &Api,
    workflow: &Workflow,
    replace: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let request = if replace {
        api.http().put(one(api, &workflow.name)?)
    } else {
        api.http().post(api.url("/workflows"))
    };
    let v = api.send(request.json(workflow)).await?;
    writeln!(
        out,
        "{} workflow {} (revision {}): {} steps",
        if replace { "wrote" } else { "created" },
        workflow.name,
        v["revision"].as_u64().unwrap_or_default(),
        workflow.steps.len()
    )?;
    for (i, layer) in workflow.layers().iter().enumerate() {
        writeln!(out, "  layer {}: {}", i + 1, layer.join(", "))?;
    }
    Ok(())
}

/// The API URL of workflow `name`, the name escaped as a path segment.
fn one(api: &Api, name: &str) -> anyhow::Result<reqwest::Url> {
    api.entry_url("/workflows", name)
}

/// The API URL of run `id`, or of its `action` (`cancel`, `redrive`).
fn run_url(api: &Api, id: &str, action: Option<&str>) -> anyhow::Result<reqwest::Url> {
    let mut url = api.entry_url("/runs", id)?;
    if let Some(action) = action {
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("the server's URL cannot take a path"))?
            .push(action);
    }
    Ok(url)
}

/// The workflow in file `file`, JSON or YAML, validated (a cycle is named).
fn workflow_of_file(file: &Path) -> anyhow::Result<Workflow> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Workflow::parse(&text).with_context(|| format!("{} is not a valid workflow", file.display()))
}

/// The workflow of Gorchestrator file `file`, named `name` (else the file's name).
fn workflow_of_matrix(file: &Path, name: Option<&str>) -> anyhow::Result<Workflow> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let matrix: Matrix = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not Gorchestrator's matrix form (JSON: name, steps, packages, matrix)",
            file.display()
        )
    })?;
    let Some(name) = name.map(str::to_string).or(matrix.name) else {
        bail!(
            "{} names no workflow: give --name, or \"name\" in the file",
            file.display()
        );
    };
    Workflow::from_matrix(&name, &matrix.steps, &matrix.packages, &matrix.matrix)
        .with_context(|| format!("{} does not make a valid workflow", file.display()))
}

/// The workflow as `import --print` shows it: its JSON without the fields at their defaults.
fn printable(workflow: &Workflow) -> anyhow::Result<Value> {
    let mut v = serde_json::to_value(workflow)?;
    let default_retry = serde_json::to_value(fx_core::limits::RetryPolicy::default())?;
    if v["on_failure"] == "stop" {
        if let Some(object) = v.as_object_mut() {
            object.remove("on_failure");
        }
    }
    for step in v["steps"].as_array_mut().into_iter().flatten() {
        if let Some(step) = step.as_object_mut() {
            if step.get("retry") == Some(&default_retry) {
                step.remove("retry");
            }
            for edge in step
                .get_mut("after")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if edge["on"] == "success" {
                    if let Some(edge) = edge.as_object_mut() {
                        edge.remove("on");
                    }
                }
            }
        }
    }
    Ok(v)
}

/// The keys of a JSON object in the order people read a workflow in: names first, the steps
/// last, the rest as the definition declares them (unknown keys alphabetically after).
fn ordered_keys(object: &serde_json::Map<String, Value>) -> Vec<&String> {
    const ORDER: [&str; 15] = [
        "name",
        "description",
        "on_failure",
        "trigger",
        "step",
        "on",
        "package",
        "handler",
        "version",
        "pool",
        "after",
        "map",
        "limits",
        "retry",
        "steps",
    ];
    let mut keys: Vec<&String> = object.keys().collect();
    keys.sort_by_key(|k| ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()));
    keys
}

/// A JSON value that serializes its objects' keys in [`ordered_keys`] order.
struct Ordered<'a>(&'a Value);

impl serde::Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Object(object) => {
                let mut map = serializer.serialize_map(Some(object.len()))?;
                for key in ordered_keys(object) {
                    map.serialize_entry(key, &Ordered(&object[key.as_str()]))?;
                }
                map.end()
            }
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Ordered(item))?;
                }
                seq.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// A JSON value as block-style YAML, keys in [`ordered_keys`] order.
fn to_yaml(v: &Value) -> anyhow::Result<String> {
    serde_yaml_ng::to_string(&Ordered(v)).context("writing the workflow as YAML")
}

/// The run's input of `run`'s flags, if any.
fn input_of(args: &RunArgs) -> anyhow::Result<Option<Value>> {
    let (text, what) = match (&args.input, &args.input_file) {
        (Some(text), _) => (text.clone(), "--input".to_string()),
        (None, Some(file)) if file == Path::new("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the input from standard input")?;
            (text, "the standard input".to_string())
        }
        (None, Some(file)) => (
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
            file.display().to_string(),
        ),
        (None, None) => return Ok(None),
    };
    let input = serde_json::from_str(&text).with_context(|| format!("{what} is not valid JSON"))?;
    Ok(Some(input))
}

/// Waits until run `id` has finished (its `finished_at` set), prints it, and fails unless it
/// succeeded.
async fn wait(api: &Api, id: &str, args: &WaitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let url = run_url(api, id, None)?;
    let mut pause = Duration::from_millis(100);
    let v = loop {
        let v = api.send(api.http().get(url.clone())).await?;
        if v["run"]["finished_at"].is_string() {
            break v;
        }
        if Instant::now() >= deadline {
            write_run(out, &v)?;
            bail!(
                "run {id} is still {} after {}s: see `ferrisfx workflow status {id}`",
                v["run"]["status"].as_str().unwrap_or("running"),
                args.timeout
            );
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    };
    write_run(out, &v)?;
    let status = v["run"]["status"].as_str().unwrap_or("?");
    if status != "succeeded" {
        let failed: Vec<String> = steps_of(&v)
            .iter()
            .filter(|s| s["status"] == "failed")
            .map(|s| match s["reason"].as_str() {
                Some(reason) => format!("{} ({reason})", s["name"].as_str().unwrap_or("?")),
                None => s["name"].as_str().unwrap_or("?").to_string(),
            })
            .collect();
        if failed.is_empty() {
            bail!("run {id} {status}");
        }
        bail!("run {id} {status}: failed step {}", failed.join(", "));
    }
    Ok(())
}

/// The steps of a run as the API shows it (`{"run": {"steps": [...]}}`).
fn steps_of(v: &Value) -> &[Value] {
    v["run"]["steps"].as_array().map_or(&[], Vec::as_slice)
}

/// A run (as `GET /api/v1/runs/{id}` shows it): a summary line and its steps as a table.
fn write_run(out: &mut dyn Write, v: &Value) -> anyhow::Result<()> {
    let run = &v["run"];
    let mut summary = format!(
        "run {}  workflow {} (revision {})  {}",
        run["id"].as_str().unwrap_or("?"),
        run["workflow"].as_str().unwrap_or("?"),
        run["revision"].as_u64().unwrap_or_default(),
        run["status"].as_str().unwrap_or("?"),
    );
    if let Some(generation) = run["generation"].as_u64().filter(|g| *g > 0) {
        summary.push_str(&format!("  generation {generation}"));
    }
    summary.push_str(&format!(
        "  started {}",
        run["created_at"].as_str().unwrap_or("?")
    ));
    match run["finished_at"].as_str() {
        Some(finished) => summary.push_str(&format!("  finished {finished}")),
        None if run["status"] != "running" => summary.push_str("  (steps still running)"),
        None => {}
    }
    writeln!(out, "{summary}")?;
    let rows: Vec<Vec<String>> = steps_of(v)
        .iter()
        .map(|s| {
            let executions: Vec<&str> = s["executions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            vec![
                s["name"].as_str().unwrap_or("?").to_string(),
                s["status"].as_str().unwrap_or("?").to_string(),
                if executions.is_empty() {
                    "-".to_string()
                } else {
                    executions.join(",")
                },
                s["reason"].as_str().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    let mut table = Table::new(&["step", "status", "executions", "reason"]);
    for row in rows {
        table.push(row);
    }
    for line in table.render().lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// The runs of `GET /api/v1/runs` (`{"runs": [...], "next_cursor"}`) as a table; the cursor
/// of the next page as a note.
fn runs_table(v: &Value) -> View {
    let mut table = Table::new(&["run", "workflow", "status", "started", "finished", "steps"]);
    for r in v["runs"].as_array().into_iter().flatten() {
        let steps: Vec<String> = r["steps"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(status, count)| format!("{status} {count}"))
            .collect();
        table.push(vec![
            cell(&r["id"]),
            cell(&r["workflow"]),
            cell(&r["status"]),
            time(&r["created_at"]),
            time(&r["finished_at"]),
            steps.join(", "),
        ]);
    }
    let cursor = v["next_cursor"]
        .as_str()
        .map(|cursor| format!("more: --cursor {cursor}"));
    View::table(&table, "runs").with_notes(cursor)
}

/// The workflows of `GET /api/v1/workflows` (`{"workflows": [{"workflow", "revision",
/// "layers"}], "invalid"}`) as a table.
fn table(v: &Value) -> View {
    let mut table = Table::new(&[
        "name",
        "steps",
        "layers",
        "on failure",
        "trigger",
        "revision",
    ]);
    for w in v["workflows"].as_array().into_iter().flatten() {
        let workflow = &w["workflow"];
        let trigger = &workflow["trigger"];
        let mut triggers = Vec::new();
        if trigger["event"].is_object() {
            triggers.push("event".to_string());
        }
        if let Some(schedule) = trigger["schedule"].as_str() {
            triggers.push(format!("schedule {schedule}"));
        }
        table.push(vec![
            cell(&workflow["name"]),
            workflow["steps"].as_array().map_or(0, Vec::len).to_string(),
            w["layers"].as_array().map_or(0, Vec::len).to_string(),
            workflow["on_failure"]
                .as_str()
                .unwrap_or("stop")
                .to_string(),
            if triggers.is_empty() {
                "-".into()
            } else {
                triggers.join(", ")
            },
            cell(&w["revision"]),
        ]);
    }
    View::table(&table, "workflows").with_notes(output::invalid_notes(v, "workflow"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `ferrisfx workflow <args>` parsed.
    fn parse(args: &[&str]) -> Result<WorkflowCommand, clap::Error> {
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            command: WorkflowCommand,
        }
        let argv = std::iter::once("workflow").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.command)
    }

    /// Runs `ferrisfx workflow <args>` against `api`; what it printed, and how it ended.
    async fn cli_out(api: &Api, args: &[&str]) -> (String, anyhow::Result<()>) {
        let command = match parse(args) {
            Ok(command) => command,
            Err(e) => return (String::new(), Err(e.into())),
        };
        let mut out = Vec::new();
        let result = execute(api, command, &mut out).await;
        (String::from_utf8(out).unwrap(), result)
    }

    /// Runs `ferrisfx workflow <args>` against `api`; what it printed.
    async fn cli(api: &Api, args: &[&str]) -> anyhow::Result<String> {
        let (out, result) = cli_out(api, args).await;
        result.map(|()| out)
    }

    /// A server nobody listens at: commands that must not reach it.
    fn nowhere() -> Api {
        Api::new("http://127.0.0.1:9")
    }

    #[test]
    fn flags_parse_and_contradictions_are_refused() {
        assert!(parse(&["create"]).is_err(), "--file is required");
        assert!(matches!(
            parse(&["create", "--file", "w.yaml", "--replace"]).unwrap(),
            WorkflowCommand::Create { replace: true, .. }
        ));
        match parse(&["run", "w", "--input", "{}", "--key", "k", "--wait"]).unwrap() {
            WorkflowCommand::Run(args) => {
                assert_eq!(args.name, "w");
                assert_eq!(args.key.as_deref(), Some("k"));
                assert!(args.wait.wait);
                assert_eq!(args.wait.timeout, 600);
            }
            other => panic!("not a run: {other:?}"),
        }
        assert!(
            parse(&["run", "w", "--input", "{}", "--input-file", "i.json"]).is_err(),
            "one input"
        );
        assert!(
            parse(&["run", "w", "--timeout", "5"]).is_err(),
            "--timeout goes with --wait"
        );
        assert!(parse(&["run", "w", "--wait", "--timeout", "5"]).is_ok());
        assert!(parse(&["import", "--matrix", "m.json", "--format", "json"]).is_err());
        assert!(parse(&["import", "--matrix", "m.json", "--print", "--format", "json"]).is_ok());
        assert!(parse(&["runs", "--limit", "x"]).is_err());
        assert!(parse(&["status", "r", "--outputs"]).is_ok());
        assert!(parse(&["redrive", "r", "--wait"]).is_ok());
    }

    #[test]
    fn run_input_comes_from_the_flag_or_a_file() {
        let args = |argv: &[&str]| match parse(argv).unwrap() {
            WorkflowCommand::Run(args) => args,
            other => panic!("not a run: {other:?}"),
        };
        assert_eq!(input_of(&args(&["run", "w"])).unwrap(), None);
        assert_eq!(
            input_of(&args(&["run", "w", "--input", r#"{"n": 1}"#])).unwrap(),
            Some(json!({"n": 1}))
        );
        let e = format!(
            "{:#}",
            input_of(&args(&["run", "w", "--input", "{n"])).unwrap_err()
        );
        assert!(e.contains("--input is not valid JSON"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("input.json");
        std::fs::write(&file, "[1, 2]").unwrap();
        assert_eq!(
            input_of(&args(&["run", "w", "--input-file", file.to_str().unwrap()])).unwrap(),
            Some(json!([1, 2]))
        );
    }

    #[tokio::test]
    async fn a_cycle_is_refused_before_anything_is_sent_with_the_cycle_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("loop.yaml");
        std::fs::write(
            &file,
            "name: loop\nsteps:\n  - name: a\n    package: {name: workflow-step}\n    after: [{step: c}]\n  - name: b\n    package: {name: workflow-step}\n    after: [{step: a}]\n  - name: c\n    package: {name: workflow-step}\n    after: [{step: b}]\n",
        )
        .unwrap();
        // The server is never asked: the error is the definition's, not "cannot reach".
        let e = cli(&nowhere(), &["create", "--file", file.to_str().unwrap()])
            .await
            .unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("loop.yaml is not a valid workflow"), "{e}");
        assert!(e.contains("workflow loop has a cycle"), "{e}");
        assert!(
            ["a → b → c → a", "b → c → a → b", "c → a → b → c"]
                .iter()
                .any(|cycle| e.contains(cycle)),
            "the cycle is named: {e}"
        );
        std::fs::write(&file, "name: broken\nsteps: [{name: a}]\n").unwrap();
        let e = format!(
            "{:#}",
            cli(&nowhere(), &["create", "--file", file.to_str().unwrap()])
                .await
                .unwrap_err()
        );
        assert!(e.contains("exactly one of package and handler"), "{e}");
        std::fs::write(&file, "{\"name\": \"x\",").unwrap();
        let e = format!(
            "{:#}",
            cli(&nowhere(), &["create", "--file", file.to_str().unwrap()])
                .await
                .unwrap_err()
        );
        assert!(e.contains("not valid JSON"), "{e}");
    }

    #[tokio::test]
    async fn a_matrix_import_prints_the_converted_workflow() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gorchestrator.json");
        // a → b, a → c, b → d, c → d.
        std::fs::write(
            &file,
            r#"{"name": "imported", "steps": ["a", "b", "c", "d"],
                "packages": ["workflow-step", "workflow-step", "hello", "workflow-step"],
                "matrix": [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]}"#,
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let expected = Workflow::from_matrix(
            "imported",
            &["a", "b", "c", "d"].map(String::from),
            &["workflow-step", "workflow-step", "hello", "workflow-step"].map(String::from),
            &[
                vec![0, 1, 1, 0],
                vec![0, 0, 0, 1],
                vec![0, 0, 0, 1],
                vec![0, 0, 0, 0],
            ],
        )
        .unwrap();

        let yaml = cli(&nowhere(), &["import", "--matrix", path, "--print"])
            .await
            .unwrap();
        assert!(
            yaml.starts_with("name: imported\nsteps:\n- name: a\n"),
            "{yaml}"
        );
        assert!(
            yaml.contains(
                "- name: d\n  package:\n    name: workflow-step\n    version: latest\n  after:\n  - step: b\n  - step: c\n"
            ),
            "{yaml}"
        );
        assert!(!yaml.contains("retry"), "defaults left out: {yaml}");
        assert_eq!(Workflow::parse(&yaml).unwrap(), expected, "{yaml}");

        let json_text = cli(
            &nowhere(),
            &["import", "--matrix", path, "--print", "--format", "json"],
        )
        .await
        .unwrap();
        assert_eq!(
            Workflow::parse(&json_text).unwrap(),
            expected,
            "{json_text}"
        );

        let renamed = cli(
            &nowhere(),
            &["import", "--matrix", path, "--print", "--name", "other"],
        )
        .await
        .unwrap();
        assert!(renamed.starts_with("name: other\n"), "{renamed}");

        // A cyclic matrix is refused with its cycle, a ragged one with its shape.
        std::fs::write(
            &file,
            r#"{"name": "m", "steps": ["a", "b"], "packages": ["p", "p"], "matrix": [[0, 1], [1, 0]]}"#,
        )
        .unwrap();
        let e = format!(
            "{:#}",
            cli(&nowhere(), &["import", "--matrix", path, "--print"])
                .await
                .unwrap_err()
        );
        assert!(e.contains("does not make a valid workflow"), "{e}");
        assert!(
            e.contains("a → b → a") || e.contains("b → a → b"),
            "the cycle is named: {e}"
        );
        std::fs::write(
            &file,
            r#"{"steps": ["a", "b"], "packages": ["p", "p"], "matrix": [[0, 1]]}"#,
        )
        .unwrap();
        let e = format!(
            "{:#}",
            cli(
                &nowhere(),
                &["import", "--matrix", path, "--print", "--name", "m"]
            )
            .await
            .unwrap_err()
        );
        assert!(e.contains("2 × 2"), "{e}");
        let e = format!(
            "{:#}",
            cli(&nowhere(), &["import", "--matrix", path, "--print"])
                .await
                .unwrap_err()
        );
        assert!(e.contains("give --name"), "{e}");
    }

    #[test]
    fn yaml_keeps_the_reading_order_and_reads_back_the_same() {
        let v = json!({"steps": [
            {"map": "/items", "name": "s", "package": {"version": "1.0.0", "name": "p"},
             "limits": {"timeout_ms": 5}},
        ], "description": "a: b", "name": "w", "list": [1, true, null, "yes"]});
        let yaml = to_yaml(&v).unwrap();
        assert!(yaml.starts_with("name: w\ndescription:"), "{yaml}");
        assert!(
            yaml.find("steps:").unwrap() < yaml.find("list:").unwrap(),
            "{yaml}"
        );
        let back: Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(back, v, "{yaml}");
    }

    #[test]
    fn runs_and_steps_are_tables() {
        let runs = json!({"runs": [
            {"id": "r1", "workflow": "diamond", "status": "succeeded",
             "created_at": "2025-01-01T00:00:00Z", "finished_at": "2025-01-01T00:00:02Z",
             "steps": {"succeeded": 4}},
            {"id": "r22", "workflow": "w", "status": "running",
             "created_at": "2025-01-01T00:00:01Z", "steps": {"pending": 1, "running": 1}},
        ], "next_cursor": "abc"});
        let view = runs_table(&runs);
        assert_eq!(
            view.out,
            "RUN  WORKFLOW  STATUS     STARTED               FINISHED              STEPS\n\
             r1   diamond   succeeded  2025-01-01 00:00:00Z  2025-01-01 00:00:02Z  succeeded 4\n\
             r22  w         running    2025-01-01 00:00:01Z  -                     pending 1, running 1\n"
        );
        assert_eq!(view.notes, ["more: --cursor abc"]);
        crate::output::testing::assert_documents(&runs, &runs_table);
        let empty = runs_table(&json!({"runs": [], "next_cursor": null}));
        assert_eq!(
            (empty.out.as_str(), empty.notes),
            ("", vec!["no runs".to_string()])
        );

        let mut out = Vec::new();
        write_run(
            &mut out,
            &json!({"run": {"id": "r1", "workflow": "w", "revision": 2, "status": "failed",
                "generation": 1, "created_at": "t0", "finished_at": "t1", "steps": [
                {"name": "a", "status": "succeeded", "executions": ["e1"]},
                {"name": "bb", "status": "failed", "executions": ["e2", "e3"], "reason": "boom"},
                {"name": "c", "status": "cancelled"},
            ]}}),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "run r1  workflow w (revision 2)  failed  generation 1  started t0  finished t1\n\
             \x20 STEP  STATUS     EXECUTIONS  REASON\n\
             \x20 a     succeeded  e1\n\
             \x20 bb    failed     e2,e3       boom\n\
             \x20 c     cancelled  -\n"
        );
    }

    /// `GET /api/v1/workflows` as the API answers it.
    fn listing() -> Value {
        json!({
            "revision": 6,
            "workflows": [
                {"workflow": {"name": "diamond", "on_failure": "stop", "steps": [
                    {"name": "a", "package": {"name": "p", "version": "latest"}},
                    {"name": "b", "package": {"name": "p", "version": "latest"}, "after": [{"step": "a"}]},
                 ]}, "revision": 4, "layers": [["a"], ["b"]]},
                {"workflow": {"name": "nightly", "on_failure": "continue",
                              "trigger": {"schedule": "nightly", "event": {"type": "x"}},
                              "steps": [{"name": "only", "handler": "h"}]},
                 "revision": 6, "layers": [["only"]]},
            ],
            "invalid": [{"name": "loop", "reason": "a cycle: a → b → a"}],
        })
    }

    #[test]
    fn the_list_is_a_table_and_the_documents_the_answer() {
        let view = table(&listing());
        assert_eq!(
            crate::output::testing::lines(&view),
            [
                "NAME     STEPS  LAYERS  ON FAILURE  TRIGGER                  REVISION",
                "diamond  2      2       stop        -                        4",
                "nightly  1      1       continue    event, schedule nightly  6",
            ]
        );
        assert_eq!(
            view.notes,
            ["invalid workflow \"loop\" (skipped): a cycle: a → b → a"]
        );
        let empty = table(&json!({"workflows": [], "invalid": []}));
        assert_eq!(empty.notes, ["no workflows"]);
        crate::output::testing::assert_documents(&listing(), &table);
    }

    /// The `workflow-step` example package, or `None` (a skip) when it is not built outside CI.
    fn workflow_step_package() -> Option<Vec<u8>> {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dist/workflow-step.fxpkg");
        match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!(
                "{}: {e}; build it with `bash infra/scripts/build-examples.sh`",
                path.display()
            ),
            Err(e) => {
                eprintln!(
                    "skipped: {}: {e}; build it with `bash infra/scripts/build-examples.sh`",
                    path.display()
                );
                None
            }
        }
    }

    /// The id printed on the first line of `workflow run`.
    fn run_id(out: &str) -> String {
        out.lines().next().unwrap().trim().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn create_run_wait_list_cancel_and_redrive_against_a_dev_server() {
        let Some(package) = workflow_step_package() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut settings = crate::settings::Settings {
            data_dir: dir.path().join("data"),
            example: false,
            ..Default::default()
        };
        settings.server.auth.enabled = false;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let platform = crate::dev::Platform::start(settings, listener, shutdown)
            .await
            .unwrap();
        let base = format!("http://{}", platform.addr);
        let api = Api::new(&base);

        // A step's package must exist: the server's refusal comes back with its reason.
        let file = dir.path().join("diamond.yaml");
        std::fs::write(
            &file,
            "# a → b, c → d\nname: diamond\ndescription: the CLI's round trip\nsteps:\n  - name: d\n    package: {name: workflow-step}\n    after: [{step: b}, {step: c}]\n  - name: b\n    package: {name: workflow-step}\n    after: [{step: a}]\n  - name: c\n    package: {name: workflow-step}\n    after: [{step: a}]\n  - name: a\n    package: {name: workflow-step}\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let e = cli(&api, &["create", "--file", path]).await.unwrap_err();
        assert!(
            e.to_string().contains("does not exist: upload it first"),
            "{e}"
        );
        api.send(
            api.http()
                .post(api.url("/packages"))
                .header("content-type", "application/octet-stream")
                .body(package),
        )
        .await
        .unwrap();

        assert_eq!(
            cli(&api, &["list"]).await.unwrap(),
            "",
            "`no workflows` goes to stderr"
        );
        let out = cli(&api, &["create", "--file", path]).await.unwrap();
        assert_eq!(
            out,
            format!(
                "created workflow diamond (revision {}): 4 steps\n  layer 1: a\n  layer 2: b, c\n  layer 3: d\n",
                revision(&api, "diamond").await
            )
        );
        let e = cli(&api, &["create", "--file", path]).await.unwrap_err();
        assert!(e.to_string().contains("409"), "{e}");
        let out = cli(&api, &["create", "--file", path, "--replace"])
            .await
            .unwrap();
        assert!(
            out.starts_with("wrote workflow diamond (revision "),
            "{out}"
        );
        let listed = cli(&api, &["list"]).await.unwrap();
        assert_eq!(
            listed,
            format!(
                "NAME     STEPS  LAYERS  ON FAILURE  TRIGGER  REVISION\n\
                 diamond  4      3       stop        -        {}\n",
                revision(&api, "diamond").await
            )
        );
        let shown: Value =
            serde_json::from_str(&cli(&api, &["show", "diamond"]).await.unwrap()).unwrap();
        assert_eq!(
            shown["layers"],
            json!([["a"], ["b", "c"], ["d"]]),
            "{shown}"
        );
        assert_eq!(shown["workflow"]["description"], "the CLI's round trip");
        assert_eq!(shown["workflow"]["steps"][0]["after"][1]["step"], "c");

        // A run waited for: every step succeeded, d after both b and c.
        let out = cli(
            &api,
            &[
                "run",
                "diamond",
                "--input",
                r#"{"order": 7}"#,
                "--wait",
                "--timeout",
                "120",
            ],
        )
        .await
        .unwrap();
        let ok = run_id(&out);
        assert!(
            out.contains(&format!("run {ok}  workflow diamond (revision ")),
            "{out}"
        );
        assert!(out.contains("  succeeded  started "), "{out}");
        for step in ["a", "b", "c", "d"] {
            assert!(
                out.lines()
                    .any(|l| l.starts_with(&format!("  {step}     succeeded  "))),
                "{step}: {out}"
            );
        }
        let status = cli(&api, &["status", &ok, "--outputs"]).await.unwrap();
        assert!(status.contains("outputs:\n"), "{status}");
        let d = status
            .lines()
            .find_map(|l| l.strip_prefix("  d: "))
            .unwrap_or_else(|| panic!("no output of d: {status}"));
        let d: Value = serde_json::from_str(d).unwrap();
        assert_eq!(d["received"], json!(["b", "c"]), "{d}");
        assert!(!cli(&api, &["status", &ok])
            .await
            .unwrap()
            .contains("outputs:"));

        // The same key starts nothing new.
        let first = cli(&api, &["run", "diamond", "--key", "once"])
            .await
            .unwrap();
        let again = cli(&api, &["run", "diamond", "--key", "once"])
            .await
            .unwrap();
        assert_eq!(run_id(&first), run_id(&again));
        assert!(!first.contains("already started"), "{first}");
        assert!(again.contains("already started"), "{again}");

        // A failing step: the wait says which and fails (a non-zero exit).
        let input = dir.path().join("input.json");
        std::fs::write(&input, r#"{"fail": ["b"]}"#).unwrap();
        let (out, result) = cli_out(
            &api,
            &[
                "run",
                "diamond",
                "--input-file",
                input.to_str().unwrap(),
                "--wait",
            ],
        )
        .await;
        let failed = run_id(&out);
        let e = format!("{:#}", result.unwrap_err());
        assert!(
            e.contains(&format!("run {failed} failed: failed step b (")),
            "{e}"
        );
        assert!(e.contains("requested failure of b"), "{e}");
        assert!(out.contains("  b     failed     "), "{out}");
        assert!(out.contains("  d     cancelled  -"), "{out}");
        // Not running any more: cancel is refused with the server's reason.
        let e = cli(&api, &["cancel", &failed]).await.unwrap_err();
        assert!(e.to_string().contains("409"), "{e}");
        // Re-driven, b fails again (the same input) and the rest keep their results.
        let (out, result) = cli_out(&api, &["redrive", &failed, "--wait"]).await;
        assert!(
            out.starts_with(&format!(
                "re-driving run {failed} of workflow diamond (generation 1): again d, b\n"
            )),
            "{out}"
        );
        assert!(out.contains("  generation 1  "), "{out}");
        assert!(result.is_err(), "{out}");

        // A run cancelled while a step sleeps, then re-driven to success.
        let out = cli(
            &api,
            &["run", "diamond", "--input", r#"{"sleep_ms": {"a": 2000}}"#],
        )
        .await
        .unwrap();
        let slow = run_id(&out);
        let out = cli(&api, &["cancel", &slow]).await.unwrap();
        assert!(
            out.starts_with(&format!("cancelled run {slow} of workflow diamond")),
            "{out}"
        );
        // Re-driving needs the run finished: wait for its running step.
        wait_finished(&api, &slow).await;
        let (out, result) = cli_out(&api, &["redrive", &slow, "--wait", "--timeout", "120"]).await;
        result.unwrap();
        assert!(out.contains("  succeeded  "), "{out}");

        // The runs table, filtered.
        let runs = cli(&api, &["runs", "--workflow", "diamond"]).await.unwrap();
        let mut lines = runs.lines();
        assert!(
            lines.next().unwrap().starts_with("RUN  ") && runs.contains("  WORKFLOW  STATUS  "),
            "{runs}"
        );
        for id in [&ok, &failed, &slow] {
            assert!(runs.contains(id.as_str()), "{id}: {runs}");
        }
        let failed_only = cli(&api, &["runs", "--status", "failed"]).await.unwrap();
        assert!(failed_only.contains(&failed), "{failed_only}");
        assert!(!failed_only.contains(&ok), "{failed_only}");
        assert!(
            failed_only.contains("  cancelled 1, failed 1, succeeded 2\n"),
            "step counts by status: {failed_only}"
        );
        let page = cli(&api, &["runs", "--limit", "1"]).await.unwrap();
        assert_eq!(
            page.lines().count(),
            2,
            "header and a run (the cursor on stderr): {page}"
        );
        let page: Value = serde_json::from_str(
            &cli(&api, &["runs", "--limit", "1", "-o", "json"])
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(page["runs"].as_array().unwrap().len(), 1, "{page}");
        assert!(page["next_cursor"].is_string(), "{page}");
        let shown: Value =
            serde_yaml_ng::from_str(&cli(&api, &["status", &ok, "-o", "yaml"]).await.unwrap())
                .unwrap();
        assert_eq!(shown["run"]["id"], ok.as_str(), "{shown:?}");
        let e = cli(&api, &["runs", "--status", "done"]).await.unwrap_err();
        assert!(e.to_string().contains("unknown run status"), "{e}");
        let e = cli(&api, &["status", "no-such-run"]).await.unwrap_err();
        assert!(
            e.to_string().contains("400") || e.to_string().contains("404"),
            "{e}"
        );

        // Importing the matrix form creates the workflow too.
        let matrix = dir.path().join("matrix.json");
        std::fs::write(
            &matrix,
            r#"{"name": "pair", "steps": ["first", "second"], "packages": ["workflow-step", "workflow-step"], "matrix": [[0, 1], [0, 0]]}"#,
        )
        .unwrap();
        let out = cli(&api, &["import", "--matrix", matrix.to_str().unwrap()])
            .await
            .unwrap();
        assert!(out.starts_with("created workflow pair (revision "), "{out}");
        assert!(
            out.ends_with("  layer 1: first\n  layer 2: second\n"),
            "{out}"
        );
        cli(&api, &["run", "pair", "--wait"]).await.unwrap();

        assert_eq!(
            cli(&api, &["delete", "pair"]).await.unwrap(),
            "deleted workflow pair\n"
        );
        let e = cli(&api, &["show", "pair"]).await.unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
        let e = cli(&api, &["run", "pair"]).await.unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
        // Its runs stay readable.
        assert!(cli(&api, &["runs", "--workflow", "pair"])
            .await
            .unwrap()
            .contains("  pair  "));
        cli(&api, &["delete", "diamond"]).await.unwrap();
        assert_eq!(cli(&api, &["list"]).await.unwrap(), "");
        platform.stop().await.unwrap();
    }

    /// The revision of workflow `name`.
    async fn revision(api: &Api, name: &str) -> u64 {
        let v = api
            .send(api.http().get(one(api, name).unwrap()))
            .await
            .unwrap();
        v["revision"].as_u64().unwrap()
    }

    /// Waits until run `id` has finished.
    async fn wait_finished(api: &Api, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let v = api
                .send(api.http().get(run_url(api, id, None).unwrap()))
                .await
                .unwrap();
            if v["run"]["finished_at"].is_string() {
                return;
            }
            assert!(Instant::now() < deadline, "run {id} never finished: {v:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
