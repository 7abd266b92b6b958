//! `ferrisfx replay <execution-id>`: runs a recorded execution again on this machine, in this
//! process, and compares what it produces with what was recorded.
//!
//! What it fetches from the server: the execution (its event, the package name, version and
//! digest it ran, its output events or failure, and the log lines of its last attempt), the
//! archive of exactly that digest (`GET /api/v1/packages/{name}/versions/{version}/archive`,
//! its SHA-256 checked against the recorded digest), and the handler as it was when the
//! execution was dispatched (its history, `GET /api/v1/handlers/{name}/history`; or as it is
//! now with `--current-handler`). From the handler and the package's manifest it resolves the
//! configuration values, granted secrets and limits as the gateway does
//! ([`Grants::resolve`], [`Limits::resolve`]), reads granted secrets from files in
//! `--secrets-dir`, and runs the function with the executor itself ([`Executor::invoke`]: the
//! same Wasmtime engine configuration, admission checks, limits and log capture).
//!
//! The comparison ([`compare`]) takes every attribute and the data of each output event (none
//! is ignored: the executor adds nothing to the events a function returns, so every value
//! comes from the function), the outcome (success, or the failure's kind and message), and
//! each log line's level, message and fields (not its time, sequence number or attempt). A
//! function that reads the clock or random numbers gives different values on each run; the
//! diff marks differences that look like times or generated ids with `~`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use fx_core::bus::embedded::EmbeddedBus;
use fx_core::event::Event;
use fx_core::execution::{
    Execution, ExecutionStatus, Failure, FailureKind, Invocation, LogLevel, LogLine,
    ResolvedPackage,
};
use fx_core::grants::Grants;
use fx_core::handler::Handler;
use fx_core::limits::Limits;
use fx_core::objects::PackageStore;
use fx_core::package::{PackageArchive, PackageDigest};
use fx_core::registry::StoredHandler;
use fx_core::store::HandlerChange;
use fx_executor::{Executor, ExecutorSettings, InvocationOutcome};
use management_server::routes::executions::ExecutionDetail;
use serde_json::Value;

use crate::client::Api;

/// Flags of `ferrisfx replay`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReplayArgs {
    /// The execution to replay (32 hex digits, as `ferrisfx executions list` shows).
    pub execution_id: String,
    /// A directory of secrets, one file per secret named like it (the layout of the
    /// executor's `secrets_dir`): the values of the secrets the handler grants.
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Run this .fxpkg instead of downloading the archive the execution ran: a copy of it
    /// when the server no longer stores it, or another build, to see what it would change.
    #[arg(long, value_name = "FILE")]
    pub package: Option<PathBuf>,
    /// Use the handler (configuration values, limits, secrets) as it is now, instead of as it
    /// was when the execution was dispatched.
    #[arg(long)]
    pub current_handler: bool,
    /// Let the function send the HTTP requests its handler allows. Off by default, so that a
    /// replay does not repeat side effects: the function's requests are refused.
    #[arg(long)]
    pub allow_http: bool,
}

/// `ferrisfx replay`: prints the report; an error (exit status 1) when the replay differs.
pub async fn run(api: &Api, args: ReplayArgs) -> anyhow::Result<()> {
    let replay = replay(api, &args).await?;
    print!("{replay}");
    if replay.matches() {
        Ok(())
    } else {
        bail!(
            "the replay of execution {} differs from its recorded run",
            replay.execution.id
        )
    }
}

/// A replay: what ran, what was recorded, what the replay produced, and how they differ.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The execution as recorded.
    pub execution: Execution,
    /// The package the execution recorded.
    pub recorded_package: ResolvedPackage,
    /// The package the replay ran (the recorded one, unless `--package` gave another).
    pub package: ResolvedPackage,
    /// Where the replay's archive came from (the server, or a file).
    pub package_source: String,
    /// Which handler the replay used, in words (its revision and when).
    pub handler_source: String,
    /// The handler the replay used.
    pub handler: Handler,
    /// The limits it ran with.
    pub limits: Limits,
    /// The configuration values and secret names the function was handed.
    pub grants: Grants,
    /// What may make the replay differ for reasons other than the function.
    pub notes: Vec<String>,
    /// The recorded outcome and log lines.
    pub recorded: Observed,
    /// The replay's outcome and log lines.
    pub replayed: Observed,
    /// How they differ; empty when the replay matches.
    pub diff: Diff,
}

impl Replay {
    /// Whether the replay produced what was recorded.
    pub fn matches(&self) -> bool {
        self.diff.is_empty()
    }
}

/// What one run produced, in the terms the comparison uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The output events as JSON (structured CloudEvents), or why the run failed.
    pub outcome: Result<Vec<Value>, Failure>,
    /// The log lines, in order.
    pub logs: Vec<Line>,
}

/// A log line without its time and position: what a replay should reproduce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Severity.
    pub level: LogLevel,
    /// The text.
    pub message: String,
    /// Structured fields.
    pub fields: BTreeMap<String, String>,
}

impl From<&LogLine> for Line {
    fn from(line: &LogLine) -> Self {
        Line {
            level: line.level,
            message: line.message.clone(),
            fields: line.fields.clone(),
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<5} {}", self.level.as_str(), self.message)?;
        for (key, value) in &self.fields {
            write!(f, " {key}={value:?}")?;
        }
        Ok(())
    }
}

impl Observed {
    /// What execution `detail` recorded: its output (succeeded) or failure (failed), and the
    /// log lines of its last attempt.
    pub fn recorded(detail: &ExecutionDetail) -> anyhow::Result<Observed> {
        let execution = &detail.execution;
        let outcome = match execution.status {
            ExecutionStatus::Succeeded => Ok(events_as_json(&execution.output)?),
            ExecutionStatus::Failed => Err(execution.error.clone().unwrap_or(Failure {
                kind: FailureKind::Internal,
                message: "(no reason recorded)".into(),
            })),
            status => bail!(
                "execution {} is {status}: only a finished execution (succeeded or failed) can be replayed",
                execution.id
            ),
        };
        let mut lines: Vec<&LogLine> = detail
            .logs
            .iter()
            .filter(|l| l.attempt == execution.attempts)
            .collect();
        lines.sort_by_key(|l| l.seq);
        Ok(Observed {
            outcome,
            logs: lines.into_iter().map(Line::from).collect(),
        })
    }

    /// What a run by the executor produced.
    pub fn of_run(outcome: &InvocationOutcome) -> anyhow::Result<Observed> {
        Ok(Observed {
            outcome: match &outcome.result {
                Ok(events) => Ok(events_as_json(events)?),
                Err(failure) => Err(failure.clone()),
            },
            logs: outcome.logs.iter().map(Line::from).collect(),
        })
    }
}

/// Events as the JSON the API shows them, each read back once so that a recorded event (which
/// went through the store's JSON) and a fresh one compare alike; without their trace context
/// (`traceparent`, `tracestate`), which the executor sets on output events and which differs
/// from run to run.
fn events_as_json(events: &[Event]) -> anyhow::Result<Vec<Value>> {
    events
        .iter()
        .map(|event| {
            let value = serde_json::to_value(event).context("encoding an output event")?;
            let again: Event =
                serde_json::from_value(value).context("reading an output event back")?;
            let mut value = serde_json::to_value(&again).context("encoding an output event")?;
            if let Some(attributes) = value.as_object_mut() {
                attributes.remove(fx_core::trace::TRACEPARENT);
                attributes.remove(fx_core::trace::TRACESTATE);
            }
            Ok(value)
        })
        .collect()
}

/// Fetches execution `args.execution_id` and what it ran, runs it again in this process and
/// compares; see the module documentation.
pub async fn replay(api: &Api, args: &ReplayArgs) -> anyhow::Result<Replay> {
    let id = fx_core::execution::ExecutionId::parse(args.execution_id.trim())?;
    let detail: ExecutionDetail = serde_json::from_value(
        api.send(api.http().get(api_url(api, &["executions", id.as_str()])?))
            .await
            .with_context(|| format!("fetching execution {id}"))?,
    )
    .context("reading the execution the server answered")?;
    let recorded = Observed::recorded(&detail)?;
    let execution = detail.execution;
    let Some(recorded_package) = execution.package.clone() else {
        bail!(
            "execution {id} never resolved a package (it failed before running: {}): there is nothing to replay",
            execution
                .error
                .as_ref()
                .map_or("no reason recorded", |e| e.message.as_str())
        );
    };
    let mut notes = Vec::new();

    // The archive: exactly the recorded digest, or the file given.
    let (bytes, package_source) = match &args.package {
        Some(file) => {
            let bytes = std::fs::read(file)
                .with_context(|| format!("reading package {}", file.display()))?;
            (bytes, format!("file {}", file.display()))
        }
        None => (
            download(api, &recorded_package).await?,
            "the server; digest verified".to_string(),
        ),
    };
    let digest = PackageDigest::of(&bytes);
    if digest != recorded_package.digest {
        notes.push(format!(
            "the package run is sha256 {digest}, not the sha256 {} the execution ran: this compares another package with the recorded run",
            recorded_package.digest
        ));
    }
    let bytes = Bytes::from(bytes);
    let manifest = {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || PackageArchive::parse(&bytes, u64::MAX))
            .await
            .context("checking the package")?
            .map_err(|e| anyhow!("the package is not valid: {}", e.chain()))?
            .manifest
    };
    let package = ResolvedPackage {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        digest: digest.clone(),
    };

    // The handler as it was (or is), and what it hands the function.
    let (mut handler, handler_source) = if args.current_handler {
        current_handler(api, &execution.handler).await?
    } else {
        handler_at(api, &execution.handler, dispatched_at(&execution)).await?
    };
    if handler.reuse_instances {
        notes.push("the handler reuses warm instances: the recorded run may have seen memory left by earlier events; the replay runs in a fresh instance".into());
        handler.reuse_instances = false;
    }
    let limits = Limits::resolve(&manifest.limits, &handler.limits);
    let mut grants = Grants::resolve(&manifest, &handler);
    if !grants.http_allow.is_empty() && !args.allow_http {
        notes.push(format!(
            "outbound HTTP to {} is refused (pass --allow-http to let the replay send the requests again)",
            grants.http_allow.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
        grants.http_allow.clear();
    }
    notes.extend(secret_notes(&grants, args.secrets_dir.as_deref()));
    notes.extend(redrive_note(&execution));

    let invocation = Invocation {
        execution_id: execution.id.clone(),
        handler: handler.clone(),
        package: package.clone(),
        event: execution.event.clone(),
        attempt: execution.attempts.max(1),
        limits,
        dispatched_at: Utc::now(),
        not_before: None,
        attempt_base: execution.attempts.saturating_sub(1),
        grants: grants.clone(),
        publish_output: true,
        trace: None,
    };
    let outcome = run_locally(&invocation, &digest, bytes, args.secrets_dir.clone()).await?;
    let replayed = Observed::of_run(&outcome)?;
    let diff = compare(&recorded, &replayed);
    Ok(Replay {
        execution,
        recorded_package,
        package,
        package_source,
        handler_source,
        handler,
        limits,
        grants,
        notes,
        recorded,
        replayed,
        diff,
    })
}

/// The URL of the API path made of `segments`, each escaped as one path segment.
fn api_url(api: &Api, segments: &[&str]) -> anyhow::Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(&api.url("")).context("the server's URL")?;
    url.path_segments_mut()
        .map_err(|()| anyhow!("the server's URL cannot take a path"))?
        .extend(segments);
    Ok(url)
}

/// The archive of `package` from the server, checked against its digest.
async fn download(api: &Api, package: &ResolvedPackage) -> anyhow::Result<Vec<u8>> {
    let url = api_url(
        api,
        &[
            "packages",
            &package.name,
            "versions",
            &package.version,
            "archive",
        ],
    )?;
    let what = format!(
        "package {}@{} (sha256 {})",
        package.name, package.version, package.digest
    );
    let response = api.respond(api.http().get(url)).await.with_context(|| {
        format!(
            "fetching the archive of {what}: the execution cannot be replayed without it (pass --package FILE with a copy of it)"
        )
    })?;
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("reading the archive of {what}"))?;
    let actual = PackageDigest::of(&bytes);
    if actual != package.digest {
        bail!(
            "the server's archive of package {}@{} is sha256 {actual}, not the sha256 {} the execution ran: it cannot be replayed bit for bit (pass --package FILE with the original)",
            package.name,
            package.version,
            package.digest
        );
    }
    Ok(bytes.to_vec())
}

/// When the handler that ran the execution's last attempt was read: when the gateway created
/// the execution (its retries carry that handler), or, for an execution run again (a re-run or
/// a re-drive after it had finished), when its last attempt started.
pub fn dispatched_at(execution: &Execution) -> DateTime<Utc> {
    if was_run_again(execution) {
        execution.started_at.unwrap_or(execution.created_at)
    } else {
        execution.created_at
    }
}

/// Whether the execution finished once and was run again afterwards.
fn was_run_again(execution: &Execution) -> bool {
    execution
        .attempt_history
        .iter()
        .any(|a| a.attempt < execution.attempts && a.status.is_terminal())
}

/// A note for an execution run again: the store keeps the package resolved when the
/// execution was created, which a re-run that was not pinned may not have run.
fn redrive_note(execution: &Execution) -> Option<String> {
    was_run_again(execution).then(|| format!(
        "the execution was run again (attempt {}): it records the package resolved when it was created, and a re-run that was not pinned ran the handler's package of its own time, which may be another",
        execution.attempts
    ))
}

/// Notes on the secrets the function is granted and where their values come from.
fn secret_notes(grants: &Grants, dir: Option<&std::path::Path>) -> Vec<String> {
    if grants.secrets.is_empty() {
        return Vec::new();
    }
    let names = || {
        grants
            .secrets
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(dir) = dir else {
        return vec![format!(
            "the handler grants secret(s) {} but no --secrets-dir was given: the function is told they are unavailable",
            names()
        )];
    };
    let missing: Vec<&str> = grants
        .secrets
        .iter()
        .filter(|name| !dir.join(name.as_str()).is_file())
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "secret(s) {} have no file in {}: the function is told they are unavailable",
        missing.join(", "),
        dir.display()
    )]
}

/// The handler as it is now.
async fn current_handler(api: &Api, name: &str) -> anyhow::Result<(Handler, String)> {
    let value = api
        .send(api.http().get(api_url(api, &["handlers", name])?))
        .await
        .with_context(|| format!("fetching handler {name}"))?;
    let stored: StoredHandler =
        serde_json::from_value(value).context("reading the handler the server answered")?;
    Ok((
        stored.handler,
        format!(
            "as it is now (revision {}, --current-handler)",
            stored.revision
        ),
    ))
}

/// The handler `name` as its history says it was at `at`.
async fn handler_at(api: &Api, name: &str, at: DateTime<Utc>) -> anyhow::Result<(Handler, String)> {
    let value = api
        .send(
            api.http()
                .get(api_url(api, &["handlers", name, "history"])?),
        )
        .await
        .with_context(|| format!("fetching the history of handler {name}"))?;
    let history: Vec<HandlerChange> =
        serde_json::from_value(value).context("reading the handler history the server answered")?;
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let change = pick_change(&history, at).ok_or_else(|| {
        anyhow!(
            "the history of handler {name} has no change at or before {}: cannot tell its configuration then (pass --current-handler to use the handler as it is now)",
            time(at)
        )
    })?;
    let Some(handler) = change.handler.clone() else {
        bail!(
            "handler {name} was deleted at {} (revision {}), before {}: pass --current-handler to use the handler as it is now",
            time(change.at),
            change.revision,
            time(at)
        );
    };
    Ok((
        handler,
        format!(
            "revision {} of {}, in force at {} (handler history)",
            change.revision,
            time(change.at),
            time(at)
        ),
    ))
}

/// The change in force at `at`: the newest made at or before it.
pub fn pick_change(history: &[HandlerChange], at: DateTime<Utc>) -> Option<&HandlerChange> {
    history
        .iter()
        .filter(|c| c.at <= at)
        .max_by_key(|c| (c.at, c.revision))
}

/// A package store holding one archive: what the replay's executor fetches.
struct OnePackage {
    digest: PackageDigest,
    bytes: Bytes,
}

#[async_trait]
impl PackageStore for OnePackage {
    async fn put(&self, _: &PackageDigest, _: Bytes) -> fx_core::Result<()> {
        Err(fx_core::Error::invalid(
            "the replay's package store is read-only",
        ))
    }

    async fn get(&self, digest: &PackageDigest) -> fx_core::Result<Bytes> {
        if digest == &self.digest {
            Ok(self.bytes.clone())
        } else {
            Err(fx_core::Error::not_found(format!(
                "package {digest} not found"
            )))
        }
    }

    async fn exists(&self, digest: &PackageDigest) -> fx_core::Result<bool> {
        Ok(digest == &self.digest)
    }

    async fn delete(&self, _: &PackageDigest) -> fx_core::Result<()> {
        Ok(())
    }
}

/// Runs `invocation` with an executor of its own, built from the executor's default settings
/// (the same engine configuration, epoch tick, ceilings and admission), one instance slot, a
/// memory budget that fits the invocation, and a compile cache in a temporary directory.
async fn run_locally(
    invocation: &Invocation,
    digest: &PackageDigest,
    bytes: Bytes,
    secrets_dir: Option<PathBuf>,
) -> anyhow::Result<InvocationOutcome> {
    let scratch = tempfile::tempdir().context("making a temporary directory for the replay")?;
    let settings = ExecutorSettings {
        pool: invocation.handler.pool.clone(),
        executor_id: "replay".into(),
        cache_dir: scratch.path().join("cache"),
        max_concurrency: 1,
        pool_instances: 1,
        secrets_dir,
        memory_budget_mb: invocation.limits.memory_mb.max(1),
        ..ExecutorSettings::default()
    };
    let packages = Arc::new(OnePackage {
        digest: digest.clone(),
        bytes,
    });
    let executor = Executor::new(settings, packages, Arc::new(EmbeddedBus::new(16)))
        .map_err(|e| anyhow!("starting the executor: {}", e.chain()))?;
    Ok(executor.invoke(invocation).await)
}

/// How a replay differs from the recorded run: readable lines, empty when they match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// The differences, one per line, indented by what they belong to.
    pub lines: Vec<String>,
    /// Whether some differing values look like times or generated ids (marked `~`).
    pub volatile: bool,
}

impl Diff {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "  {line}")?;
        }
        if self.is_empty() {
            return Ok(());
        }
        if self.volatile {
            writeln!(
                f,
                "note: the differences marked ~ look like times or generated ids: a function that reads the clock or random numbers gives different values on every run, so they need not mean that it behaves differently"
            )
        } else {
            writeln!(
                f,
                "note: a function that reads the clock or random numbers gives different values on every run"
            )
        }
    }
}

/// Compares a recorded run with a replay: the outcome (success, or the failure's kind and
/// message), every attribute and the data of each output event, and each log line's level,
/// message and fields.
pub fn compare(recorded: &Observed, replayed: &Observed) -> Diff {
    let mut diff = Diff::default();
    match (&recorded.outcome, &replayed.outcome) {
        (Ok(before), Ok(after)) => compare_events(before, after, &mut diff),
        (Ok(before), Err(failure)) => diff.lines.push(format!(
            "outcome: recorded succeeded with {} output event(s); the replay failed: {}: {}",
            before.len(),
            failure.kind.as_str(),
            failure.message
        )),
        (Err(failure), Ok(after)) => diff.lines.push(format!(
            "outcome: recorded failed ({}: {}); the replay succeeded with {} output event(s)",
            failure.kind.as_str(),
            failure.message,
            after.len()
        )),
        (Err(before), Err(after)) => {
            if before.kind != after.kind || before.message != after.message {
                let mark = mark(volatile_text(&before.message, &after.message), &mut diff);
                diff.lines.push(format!(
                    "{mark}failure: recorded {}: {}; replayed {}: {}",
                    before.kind.as_str(),
                    before.message,
                    after.kind.as_str(),
                    after.message
                ));
            }
        }
    }
    compare_logs(&recorded.logs, &replayed.logs, &mut diff);
    diff
}

/// `~ ` for a difference that looks volatile (and records that one did), else two spaces.
fn mark(volatile: bool, diff: &mut Diff) -> &'static str {
    if volatile {
        diff.volatile = true;
        "~ "
    } else {
        ""
    }
}

fn compare_events(before: &[Value], after: &[Value], diff: &mut Diff) {
    for n in 0..before.len().max(after.len()) {
        match (before.get(n), after.get(n)) {
            (Some(b), Some(a)) => {
                let mut changes = Vec::new();
                json_diff("", b, a, &mut changes);
                if changes.is_empty() {
                    continue;
                }
                diff.lines
                    .push(format!("output event {n} ({}):", event_name(b)));
                for (path, was, is) in changes {
                    let volatile = match (&was, &is) {
                        (Some(was), Some(is)) => {
                            path == "/time" || volatile_text(&was.to_string(), &is.to_string())
                        }
                        _ => false,
                    };
                    let mark = mark(volatile, diff);
                    diff.lines.push(format!(
                        "  {mark}{path}: recorded {}, replayed {}",
                        shown(was.as_ref()),
                        shown(is.as_ref())
                    ));
                }
            }
            (Some(b), None) => diff.lines.push(format!(
                "output event {n} ({}): recorded, missing from the replay: {b}",
                event_name(b)
            )),
            (None, Some(a)) => diff.lines.push(format!(
                "output event {n} ({}): only in the replay: {a}",
                event_name(a)
            )),
            (None, None) => {}
        }
    }
}

/// `type id` of an event in JSON, for headings.
fn event_name(event: &Value) -> String {
    format!(
        "{} {}",
        event["type"].as_str().unwrap_or("?"),
        event["id"].as_str().unwrap_or("?")
    )
}

fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "(absent)".to_string(), Value::to_string)
}

/// The differences between two JSON values, as (JSON pointer, recorded, replayed); objects are
/// compared key by key, arrays item by item, anything else whole.
fn json_diff(
    path: &str,
    before: &Value,
    after: &Value,
    out: &mut Vec<(String, Option<Value>, Option<Value>)>,
) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for key in keys {
                let here = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (b.get(key), a.get(key)) {
                    (Some(x), Some(y)) => json_diff(&here, x, y, out),
                    (x, y) => out.push((here, x.cloned(), y.cloned())),
                }
            }
        }
        (Value::Array(b), Value::Array(a)) if b.len() == a.len() => {
            for (n, (x, y)) in b.iter().zip(a).enumerate() {
                json_diff(&format!("{path}/{n}"), x, y, out);
            }
        }
        (b, a) if b != a => out.push((
            if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            Some(b.clone()),
            Some(a.clone()),
        )),
        _ => {}
    }
}

/// Whether two differing texts differ only where digits or hex letters are (`2026-05-01T10:00:00Z`
/// and `2026-05-01T10:00:03Z`, two UUIDs, two counters): what the clock or a random number
/// generator changes from run to run.
fn volatile_text(a: &str, b: &str) -> bool {
    let mask = |text: &str| -> String {
        text.chars()
            .map(|c| if c.is_ascii_hexdigit() { '0' } else { c })
            .collect()
    };
    a != b && mask(a) == mask(b)
}

/// Log lines beyond which the comparison aligns lines by position rather than searching for
/// the longest common run (quadratic).
const MAX_ALIGNED_LINES: usize = 2_000;

fn compare_logs(before: &[Line], after: &[Line], diff: &mut Diff) {
    if before == after {
        return;
    }
    diff.lines.push(format!(
        "log lines (- recorded: {}, + replayed: {}):",
        before.len(),
        after.len()
    ));
    let edits = if before.len() <= MAX_ALIGNED_LINES && after.len() <= MAX_ALIGNED_LINES {
        align(before, after)
    } else {
        by_position(before, after)
    };
    // A line removed then one added at the same place is a change: mark it when volatile.
    let mut n = 0;
    while n < edits.len() {
        match (&edits[n], edits.get(n + 1)) {
            (Edit::Removed(b), Some(Edit::Added(a))) => {
                let volatile = b.level == a.level
                    && b.fields.keys().eq(a.fields.keys())
                    && volatile_text(&b.to_string(), &a.to_string());
                let mark = if volatile { "~" } else { " " };
                if volatile {
                    diff.volatile = true;
                }
                diff.lines.push(format!("{mark} - {b}"));
                diff.lines.push(format!("{mark} + {a}"));
                n += 2;
                continue;
            }
            (Edit::Same(line), _) => diff.lines.push(format!("    {line}")),
            (Edit::Removed(line), _) => diff.lines.push(format!("  - {line}")),
            (Edit::Added(line), _) => diff.lines.push(format!("  + {line}")),
        }
        n += 1;
    }
}

enum Edit<'a> {
    Same(&'a Line),
    Removed(&'a Line),
    Added(&'a Line),
}

/// The edits from `before` to `after` along their longest common subsequence.
fn align<'a>(before: &'a [Line], after: &'a [Line]) -> Vec<Edit<'a>> {
    let (n, m) = (before.len(), after.len());
    // common[i][j]: the longest common subsequence of before[i..] and after[j..].
    let mut common = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            common[i][j] = if before[i] == after[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut edits = Vec::with_capacity(n.max(m));
    while i < n || j < m {
        if i < n && j < m && before[i] == after[j] {
            edits.push(Edit::Same(&before[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || common[i][j + 1] > common[i + 1][j]) {
            edits.push(Edit::Added(&after[j]));
            j += 1;
        } else {
            edits.push(Edit::Removed(&before[i]));
            i += 1;
        }
    }
    edits
}

/// The edits from `before` to `after` line by line.
fn by_position<'a>(before: &'a [Line], after: &'a [Line]) -> Vec<Edit<'a>> {
    let mut edits = Vec::new();
    for n in 0..before.len().max(after.len()) {
        match (before.get(n), after.get(n)) {
            (Some(b), Some(a)) if b == a => edits.push(Edit::Same(b)),
            (b, a) => {
                edits.extend(b.map(Edit::Removed));
                edits.extend(a.map(Edit::Added));
            }
        }
    }
    edits
}

impl fmt::Display for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.execution;
        let p = &self.package;
        writeln!(
            f,
            "execution {} of handler {}: {} after {} attempt(s)",
            e.id, e.handler, e.status, e.attempts
        )?;
        writeln!(
            f,
            "package   {}@{} sha256 {} (from {})",
            p.name, p.version, p.digest, self.package_source
        )?;
        writeln!(f, "handler   {}", self.handler_source)?;
        let l = &self.limits;
        writeln!(
            f,
            "limits    memory {} MiB, timeout {} ms, fuel {}, output {} B, logs {} B",
            l.memory_mb,
            l.timeout_ms,
            l.fuel.map_or("unmetered".into(), |fuel| fuel.to_string()),
            l.max_output_bytes,
            l.max_log_bytes
        )?;
        let config: Vec<String> = self
            .grants
            .config
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        writeln!(
            f,
            "config    {}",
            if config.is_empty() {
                "none".into()
            } else {
                config.join(" ")
            }
        )?;
        if !self.grants.secrets.is_empty() {
            let names: Vec<&str> = self.grants.secrets.iter().map(String::as_str).collect();
            writeln!(f, "secrets   {}", names.join(", "))?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        if self.matches() {
            let events = match &self.replayed.outcome {
                Ok(events) => format!("{} output event(s)", events.len()),
                Err(failure) => format!("the same failure ({})", failure.kind.as_str()),
            };
            writeln!(
                f,
                "replay matches: {events}, {} log line(s)",
                self.replayed.logs.len()
            )
        } else {
            writeln!(f, "replay differs:")?;
            write!(f, "{}", self.diff)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(level: LogLevel, message: &str, fields: &[(&str, &str)]) -> Line {
        Line {
            level,
            message: message.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn greeting(id: &str, text: &str) -> Value {
        json!({
            "specversion": "1.0", "id": id, "source": "/functions/hello",
            "type": "com.ferrisfx.hello.greeted", "datacontenttype": "application/json",
            "data": {"greeting": text},
        })
    }

    fn run(events: Vec<Value>, logs: Vec<Line>) -> Observed {
        Observed {
            outcome: Ok(events),
            logs,
        }
    }

    fn recorded() -> Observed {
        run(
            vec![greeting("e-1-greeting", "Hello, x!")],
            vec![line(
                LogLevel::Info,
                "hello from FerrisFX",
                &[("event_id", "e-1")],
            )],
        )
    }

    #[test]
    fn the_same_run_matches() {
        let diff = compare(&recorded(), &recorded());
        assert!(diff.is_empty(), "{diff}");
        assert_eq!(diff.to_string(), "");
    }

    #[test]
    fn different_output_data_is_shown_by_path() {
        let mut replayed = recorded();
        replayed.outcome = Ok(vec![greeting("e-1-greeting", "Howdy, x!")]);
        let diff = compare(&recorded(), &replayed);
        assert!(!diff.is_empty());
        let text = diff.to_string();
        assert!(
            text.contains("output event 0 (com.ferrisfx.hello.greeted e-1-greeting):"),
            "{text}"
        );
        assert!(
            text.contains("/data/greeting: recorded \"Hello, x!\", replayed \"Howdy, x!\""),
            "{text}"
        );
        assert!(!diff.volatile, "{text}");
        assert!(text.contains("clock or random numbers"), "{text}");
    }

    #[test]
    fn a_different_log_line_is_shown_as_removed_and_added() {
        let mut replayed = recorded();
        replayed.logs[0]
            .fields
            .insert("event_id".into(), "e-2".into());
        replayed
            .logs
            .push(line(LogLevel::Warn, "something odd", &[]));
        let text = compare(&recorded(), &replayed).to_string();
        assert!(
            text.contains("log lines (- recorded: 1, + replayed: 2):"),
            "{text}"
        );
        assert!(
            text.contains("- info  hello from FerrisFX event_id=\"e-1\""),
            "{text}"
        );
        assert!(
            text.contains("+ info  hello from FerrisFX event_id=\"e-2\""),
            "{text}"
        );
        assert!(text.contains("+ warn  something odd"), "{text}");
        // A level alone is a difference too.
        let mut replayed = recorded();
        replayed.logs[0].level = LogLevel::Debug;
        assert!(!compare(&recorded(), &replayed).is_empty());
    }

    #[test]
    fn an_extra_or_missing_event_is_named() {
        let mut replayed = recorded();
        if let Ok(events) = &mut replayed.outcome {
            events.push(greeting("e-1-extra", "again"));
        }
        let text = compare(&recorded(), &replayed).to_string();
        assert!(
            text.contains(
                "output event 1 (com.ferrisfx.hello.greeted e-1-extra): only in the replay"
            ),
            "{text}"
        );
        let text = compare(&replayed, &recorded()).to_string();
        assert!(
            text.contains("output event 1 (com.ferrisfx.hello.greeted e-1-extra): recorded, missing from the replay"),
            "{text}"
        );
    }

    #[test]
    fn a_failure_against_a_success_is_a_difference_and_so_is_another_failure() {
        let failed = |kind, message: &str| Observed {
            outcome: Err(Failure {
                kind,
                message: message.into(),
            }),
            logs: Vec::new(),
        };
        let text = compare(
            &recorded(),
            &failed(FailureKind::Timeout, "timed out after 5000 ms"),
        )
        .to_string();
        assert!(
            text.contains("recorded succeeded with 1 output event(s); the replay failed: timeout: timed out after 5000 ms"),
            "{text}"
        );
        let same = failed(FailureKind::Trap, "unreachable");
        assert!(compare(&same, &same).is_empty());
        assert!(!compare(&same, &failed(FailureKind::FunctionError, "unreachable")).is_empty());
    }

    #[test]
    fn times_and_random_ids_are_marked_as_volatile() {
        let mut before = recorded();
        let mut after = recorded();
        if let (Ok(b), Ok(a)) = (&mut before.outcome, &mut after.outcome) {
            b[0]["time"] = json!("2026-05-01T10:00:00Z");
            a[0]["time"] = json!("2026-05-01T10:00:07Z");
            b[0]["id"] = json!("5f0c6a3e-8a56-4c1b-9d3e-0a1b2c3d4e5f");
            a[0]["id"] = json!("9b1d2e4f-1c2d-4e3f-8a9b-0c1d2e3f4a5b");
        }
        let diff = compare(&before, &after);
        assert!(diff.volatile);
        let text = diff.to_string();
        assert!(text.contains("~ /time: recorded"), "{text}");
        assert!(text.contains("~ /id: recorded"), "{text}");
        assert!(text.contains("look like times or generated ids"), "{text}");
        assert!(volatile_text("took 12 ms", "took 15 ms"));
        assert!(!volatile_text("Hello", "Howdy"));
        assert!(!volatile_text("same", "same"));
    }

    #[test]
    fn the_change_in_force_is_the_newest_at_or_before_the_moment() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let change = |revision, when: &str| HandlerChange {
            name: "h".into(),
            revision,
            handler: None,
            at: at(when),
            by: None,
        };
        let history = vec![
            change(3, "2026-01-03T00:00:00Z"),
            change(2, "2026-01-02T00:00:00Z"),
            change(1, "2026-01-01T00:00:00Z"),
        ];
        let pick = |when| pick_change(&history, at(when)).map(|c| c.revision);
        assert_eq!(pick("2026-01-02T12:00:00Z"), Some(2));
        assert_eq!(pick("2026-01-03T00:00:00Z"), Some(3));
        assert_eq!(pick("2025-12-31T00:00:00Z"), None);
    }
}
