//! Backup and restore of everything a deployment holds, through its ports: whatever the
//! backends (SQLite or PostgreSQL, a directory or S3, a file or Consul), a backup is the same
//! archive, and a restore writes it into whatever backends the target has. That makes it the
//! migration path from `ferrisfx dev` to a deployment and back.
//!
//! **The archive** is a gzip'd tar: `archives/<digest>` (each package archive, named by its
//! SHA-256), then JSON Lines files `<section>/<part>.jsonl` of at most [`PART_RECORDS`]
//! records (so that neither writing nor restoring holds more than one part in memory), then
//! `manifest.json`: the format, when the backup was taken, and every file with its record count
//! and SHA-256. Sections, in the order a restore applies them: package versions, aliases and
//! owners; handlers and their history; schedules, webhooks, chat bundles, notification rules and
//! workflows; accounts (with their password hashes), tokens (hashed), rules; secrets (still
//! sealed: the target needs the same keyring to open them); the schedules' last ticks; and, when
//! asked, the finished executions created since a time with their log lines, the finished
//! workflow runs and the audit log since then.
//!
//! **Consistent while events flow**: each collection is read at once, handlers before package
//! versions (a handler never refers to a package the backup lacks: versions are never deleted
//! while a handler uses them), and executions are the finished ones created before the backup
//! started, so events arriving meanwhile are either wholly in it or not at all.
//!
//! **Restore** reads the archive twice: first to check every file against the manifest (a
//! truncated or altered archive writes nothing), then to write. It refuses a target that holds
//! handlers, packages or other configuration unless forced (then existing entries are
//! replaced), and verifies afterwards, from the target's own backends, that every section's
//! count is there and every package archive reads back with its digest.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::backends::Backends;
use crate::error::{Error, ErrorKind, Result};
use crate::execution::{Execution, ExecutionQuery, ExecutionStatus, LogLine, StateEvent};
use crate::identity::{Account, AuditQuery, AuditRecord, Rule, Subject, TokenRecord};
use crate::package::{PackageAlias, PackageDigest, PackageVersion};
use crate::registry::{Entry, Expect, Registry};
use crate::secrets::{SecretMeta, SecretRecord};
use crate::store::HandlerChange;
use crate::workflow::run::Run;

/// The archive format this build writes and reads.
pub const FORMAT: u32 = 1;
/// The most records one JSON Lines part holds.
pub const PART_RECORDS: usize = 2_000;
/// The largest file an archive may hold: a package archive or a part of 2,000 records.
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// The manifest's name in the archive (its last file).
pub const MANIFEST: &str = "manifest.json";
/// The folder of package archives in the archive.
const ARCHIVES: &str = "archives";

/// The sections, in the order they are written and restored.
pub const SECTIONS: &[&str] = &[
    "packages",
    "aliases",
    "package-owners",
    "handlers",
    "handler-history",
    "schedules",
    "hooks",
    "bundles",
    "notification-rules",
    "workflows",
    "accounts",
    "tokens",
    "rules",
    "secrets",
    "schedule-ticks",
    "executions",
    "logs",
    "runs",
    "audit",
];

/// What a backup takes beyond the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupOptions {
    /// Also the finished executions created at or after this time, with their log lines, the
    /// workflow runs and the audit log since then.
    #[serde(default)]
    pub executions_since: Option<DateTime<Utc>>,
}

/// How a restore treats a target that is not empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOptions {
    /// Restore into a target that holds configuration: entries of the same name are replaced.
    #[serde(default)]
    pub force: bool,
}

/// The last file of an archive: what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// When the backup started.
    pub created_at: DateTime<Utc>,
    /// The version of FerrisFX that wrote it.
    pub version: String,
    /// Executions created since then are in it (none when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executions_since: Option<DateTime<Utc>>,
    /// Records per section (package archives under `archives`).
    pub counts: BTreeMap<String, u64>,
    /// Every other file, in archive order.
    pub files: Vec<FileEntry>,
}

/// One file of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its path in the archive.
    pub path: String,
    /// Records in it (1 for a package archive).
    pub records: u64,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The archive's manifest.
    pub manifest: Option<Manifest>,
    /// Records written per section.
    pub restored: BTreeMap<String, u64>,
    /// Records left as the target had them (an account that exists, a token that exists), per
    /// section.
    pub kept: BTreeMap<String, u64>,
    /// Records per section found in the target afterwards (at least the archive's count).
    pub verified: BTreeMap<String, u64>,
    /// Package archives read back from the target with their digest.
    pub archives_verified: u64,
}

/// An account as backed up: with its password hash.
#[derive(Serialize, Deserialize)]
struct AccountRecord {
    #[serde(flatten)]
    account: Account,
    #[serde(default)]
    password_hash: Option<String>,
}

/// A token as backed up: with its secret's hash.
#[derive(Serialize, Deserialize)]
struct TokenBackup {
    #[serde(flatten)]
    token: TokenRecord,
    secret_hash: String,
}

/// A rule as backed up.
#[derive(Serialize, Deserialize)]
struct RuleRecord {
    #[serde(flatten)]
    rule: Rule,
    created_by: String,
    created_at: DateTime<Utc>,
}

/// A secret as backed up: still sealed.
#[derive(Serialize, Deserialize)]
struct SecretBackup {
    meta: SecretMeta,
    sealed: String,
}

/// A package's owner.
#[derive(Serialize, Deserialize)]
struct OwnerRecord {
    package: String,
    owner: String,
}

/// A schedule's last tick.
#[derive(Serialize, Deserialize)]
struct TickRecord {
    schedule: String,
    at: DateTime<Utc>,
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::internal(format!("{what}: {e}"))
}

fn bad_archive(why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("not a FerrisFX backup, or a damaged one: {why}"))
}

// ---------------------------------------------------------------------------------------------
// Writing

/// A file on its way into the archive.
struct Part {
    path: String,
    bytes: Vec<u8>,
}

/// Writes files into a tar.gz on a blocking thread; the async side hands them over one by one.
struct ArchiveWriter {
    parts: mpsc::Sender<Part>,
    thread: tokio::task::JoinHandle<Result<()>>,
    files: Vec<FileEntry>,
    counts: BTreeMap<String, u64>,
}

impl ArchiveWriter {
    fn new(out: Box<dyn Write + Send>) -> Self {
        let (parts, mut receive) = mpsc::channel::<Part>(1);
        let thread = tokio::task::spawn_blocking(move || {
            let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            let mut tar = tar::Builder::new(gz);
            while let Some(part) = receive.blocking_recv() {
                let mut header = tar::Header::new_gnu();
                header.set_size(part.bytes.len() as u64);
                header.set_mode(0o644);
                header.set_mtime(Utc::now().timestamp().max(0) as u64);
                tar.append_data(&mut header, &part.path, part.bytes.as_slice())
                    .map_err(io("writing the backup"))?;
            }
            let gz = tar.into_inner().map_err(io("writing the backup"))?;
            let mut out = gz.finish().map_err(io("writing the backup"))?;
            out.flush().map_err(io("writing the backup"))?;
            Ok(())
        });
        ArchiveWriter {
            parts,
            thread,
            files: Vec::new(),
            counts: BTreeMap::new(),
        }
    }

    async fn put(&mut self, path: String, bytes: Vec<u8>, records: u64) -> Result<()> {
        self.files.push(FileEntry {
            path: path.clone(),
            records,
            bytes: bytes.len() as u64,
            sha256: hex_sha256(&bytes),
        });
        if self.parts.send(Part { path, bytes }).await.is_err() {
            return Err(self.failure().await);
        }
        Ok(())
    }

    /// The writer thread's error, once it stopped taking parts.
    async fn failure(&mut self) -> Error {
        let (dead, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.parts, dead));
        match (&mut self.thread).await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => Error::internal("the backup writer stopped early"),
            Err(e) => Error::internal(format!("the backup writer failed: {e}")),
        }
    }

    /// Writes `records` of `section` as JSON Lines parts.
    async fn section<T: Serialize>(&mut self, section: &str, records: &[T]) -> Result<()> {
        let counted = self.counts.entry(section.to_string()).or_insert(0);
        let first_part = (*counted as usize).div_ceil(PART_RECORDS);
        *counted += records.len() as u64;
        for (i, chunk) in records.chunks(PART_RECORDS).enumerate() {
            let mut bytes = Vec::new();
            for record in chunk {
                serde_json::to_writer(&mut bytes, record)
                    .map_err(|e| Error::internal(format!("encoding a record of {section}: {e}")))?;
                bytes.push(b'\n');
            }
            let path = format!("{section}/{:05}.jsonl", first_part + i);
            self.put(path, bytes, chunk.len() as u64).await?;
        }
        Ok(())
    }

    async fn finish(mut self, manifest: &mut Manifest) -> Result<()> {
        manifest.files = std::mem::take(&mut self.files);
        manifest.counts = std::mem::take(&mut self.counts);
        for section in SECTIONS {
            manifest.counts.entry(section.to_string()).or_insert(0);
        }
        let bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::internal(format!("encoding the manifest: {e}")))?;
        if self
            .parts
            .send(Part {
                path: MANIFEST.to_string(),
                bytes,
            })
            .await
            .is_err()
        {
            return Err(self.failure().await);
        }
        drop(self.parts);
        self.thread
            .await
            .map_err(|e| Error::internal(format!("the backup writer failed: {e}")))?
    }
}

async fn collection<T: Entry>(
    out: &mut ArchiveWriter,
    section: &str,
    registry: &dyn Registry<T>,
) -> Result<()> {
    let table = registry.table().await?;
    for invalid in &table.invalid {
        tracing::warn!(section, name = %invalid.name, reason = %invalid.reason, "an entry that does not parse is left out of the backup");
    }
    let entries: Vec<T> = table.entries.into_iter().map(|s| s.entry).collect();
    out.section(section, &entries).await
}

/// Writes a backup of everything `backends` hold into `out` (a tar.gz); returns its manifest.
pub async fn write_backup(
    backends: &Backends,
    options: &BackupOptions,
    out: Box<dyn Write + Send>,
) -> Result<Manifest> {
    let started = Utc::now();
    let mut manifest = Manifest {
        format: FORMAT,
        created_at: started,
        version: env!("CARGO_PKG_VERSION").to_string(),
        executions_since: options.executions_since,
        counts: BTreeMap::new(),
        files: Vec::new(),
    };
    let mut out = ArchiveWriter::new(out);
    // Handlers first: every package they refer to exists when the versions are read after.
    let handlers = backends.registry.table().await?;
    for invalid in &handlers.invalid {
        tracing::warn!(name = %invalid.name, reason = %invalid.reason, "a handler that does not parse is left out of the backup");
    }
    let handlers: Vec<_> = handlers.handlers.into_iter().map(|s| s.handler).collect();
    let versions = backends.state.list_package_versions(None).await?;
    let mut names: Vec<String> = versions.iter().map(|v| v.name.clone()).collect();
    names.sort();
    names.dedup();
    let mut digests: Vec<&PackageDigest> = versions.iter().map(|v| &v.digest).collect();
    digests.sort();
    digests.dedup();
    for digest in &digests {
        let bytes = backends.packages.get(digest).await?;
        out.put(format!("{ARCHIVES}/{digest}"), bytes.to_vec(), 1)
            .await?;
    }
    out.counts
        .insert(ARCHIVES.to_string(), digests.len() as u64);
    out.section("packages", &versions).await?;
    let mut aliases: Vec<PackageAlias> = Vec::new();
    let mut owners: Vec<OwnerRecord> = Vec::new();
    for name in &names {
        aliases.extend(backends.state.list_aliases(name).await?);
        if let Some(owner) = backends.identity.package_owner(name).await? {
            owners.push(OwnerRecord {
                package: name.clone(),
                owner: owner.to_string(),
            });
        }
    }
    out.section("aliases", &aliases).await?;
    out.section("package-owners", &owners).await?;
    let mut history: Vec<HandlerChange> = Vec::new();
    for handler in &handlers {
        history.extend(backends.state.handler_history(&handler.name).await?);
    }
    out.section("handlers", &handlers).await?;
    out.section("handler-history", &history).await?;
    collection(&mut out, "schedules", backends.schedules.as_ref()).await?;
    collection(&mut out, "hooks", backends.hooks.as_ref()).await?;
    collection(&mut out, "bundles", backends.bundles.as_ref()).await?;
    collection(
        &mut out,
        "notification-rules",
        backends.notification_rules.as_ref(),
    )
    .await?;
    collection(&mut out, "workflows", backends.workflows.as_ref()).await?;

    let mut accounts = Vec::new();
    for account in backends.identity.accounts().await? {
        let password_hash = account.password_hash.clone();
        accounts.push(AccountRecord {
            account,
            password_hash,
        });
    }
    out.section("accounts", &accounts).await?;
    let tokens: Vec<TokenBackup> = backends
        .identity
        .tokens(None)
        .await?
        .into_iter()
        .map(|token| TokenBackup {
            secret_hash: token.secret_hash.clone(),
            token,
        })
        .collect();
    out.section("tokens", &tokens).await?;
    let rules: Vec<RuleRecord> = backends
        .identity
        .rules()
        .await?
        .into_iter()
        .map(|stored| RuleRecord {
            rule: stored.rule,
            created_by: stored.created_by,
            created_at: stored.created_at,
        })
        .collect();
    out.section("rules", &rules).await?;
    let secrets: Vec<SecretBackup> = backends
        .secrets
        .secrets()
        .await?
        .into_iter()
        .map(|record| SecretBackup {
            meta: record.meta,
            sealed: base64::engine::general_purpose::STANDARD.encode(record.sealed),
        })
        .collect();
    out.section("secrets", &secrets).await?;
    let mut ticks: Vec<TickRecord> = backends
        .ticks
        .last_ticks()
        .await?
        .into_iter()
        .map(|(schedule, at)| TickRecord { schedule, at })
        .collect();
    ticks.sort_by(|a, b| a.schedule.cmp(&b.schedule));
    out.section("schedule-ticks", &ticks).await?;

    if let Some(since) = options.executions_since {
        executions_since(backends, &mut out, since, started).await?;
    }
    out.finish(&mut manifest).await?;
    tracing::info!(files = manifest.files.len(), counts = ?manifest.counts, "backup written");
    Ok(manifest)
}

/// The finished executions created in [`since`, `until`), their log lines, the runs and the
/// audit log since `since`.
async fn executions_since(
    backends: &Backends,
    out: &mut ArchiveWriter,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<()> {
    let mut query = ExecutionQuery {
        since: Some(since),
        until: Some(until),
        limit: Some(500),
        ..ExecutionQuery::default()
    };
    let mut executions: Vec<Execution> = Vec::new();
    let mut logs: Vec<LogLine> = Vec::new();
    loop {
        let page = backends.state.list_executions(&query).await?;
        for summary in page.items {
            if !matches!(
                summary.status,
                ExecutionStatus::Succeeded | ExecutionStatus::Failed
            ) {
                continue;
            }
            let Some(execution) = backends.state.get_execution(&summary.id).await? else {
                continue;
            };
            logs.extend(backends.sink.execution_logs(&execution.id).await?);
            executions.push(execution);
            if executions.len() >= PART_RECORDS {
                out.section("executions", &executions).await?;
                executions.clear();
            }
            if logs.len() >= PART_RECORDS {
                out.section("logs", &logs).await?;
                logs.clear();
            }
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    out.section("executions", &executions).await?;
    out.section("logs", &logs).await?;

    let mut runs: Vec<Run> = Vec::new();
    let mut run_query = crate::workflow::ledger::RunQuery {
        since: Some(since),
        until: Some(until),
        limit: Some(200),
        ..Default::default()
    };
    loop {
        let page = backends.runs.list_runs(&run_query).await?;
        for summary in page.items {
            // Only finished runs, as only finished executions: an unfinished one restored
            // would be moved on by the target's conductors and start its steps there again.
            match backends.runs.get_run(&summary.id).await? {
                Some(run) if run.finished_at.is_some() => runs.push(run),
                _ => {}
            }
            if runs.len() >= PART_RECORDS {
                out.section("runs", &runs).await?;
                runs.clear();
            }
        }
        match page.next_cursor {
            Some(cursor) => run_query.cursor = Some(cursor),
            None => break,
        }
    }
    out.section("runs", &runs).await?;

    let mut audit: Vec<AuditRecord> = Vec::new();
    let mut audit_query = AuditQuery {
        since: Some(since),
        ..AuditQuery::default()
    };
    loop {
        let page = backends.identity.audit(&audit_query).await?;
        audit.extend(page.items.into_iter().filter(|r| r.at < until));
        match page.next_cursor {
            Some(cursor) => audit_query.cursor = Some(cursor),
            None => break,
        }
    }
    // Oldest first, so that a restore appends them in their order.
    audit.reverse();
    out.section("audit", &audit).await
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Reads the archive at `path` on a blocking thread, handing its files over one by one.
fn read_parts(path: &Path) -> (mpsc::Receiver<Result<Part>>, tokio::task::JoinHandle<()>) {
    let (send, receive) = mpsc::channel::<Result<Part>>(1);
    let path = path.to_path_buf();
    let thread = tokio::task::spawn_blocking(move || {
        let result = (|| -> Result<()> {
            let file = std::fs::File::open(&path)
                .map_err(|e| Error::invalid(format!("opening {}: {e}", path.display())))?;
            let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
            let mut archive = tar::Archive::new(gz);
            for entry in archive.entries().map_err(bad_archive)? {
                let mut entry = entry.map_err(bad_archive)?;
                let name = entry
                    .path()
                    .map_err(bad_archive)?
                    .to_string_lossy()
                    .into_owned();
                // The header's size is not trusted for the allocation, and no file may be
                // larger than any backup writes.
                if entry.size() > MAX_FILE_BYTES {
                    return Err(bad_archive(format!(
                        "{name} is {} bytes, more than the {MAX_FILE_BYTES} a backup's file may be",
                        entry.size()
                    )));
                }
                let mut bytes = Vec::with_capacity(entry.size().min(16 << 20) as usize);
                (&mut entry)
                    .take(MAX_FILE_BYTES + 1)
                    .read_to_end(&mut bytes)
                    .map_err(bad_archive)?;
                if send.blocking_send(Ok(Part { path: name, bytes })).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = send.blocking_send(Err(e));
        }
    });
    (receive, thread)
}

/// Checks every file of the archive at `path` against its manifest; returns the manifest.
pub async fn verify_archive(path: &Path) -> Result<Manifest> {
    let (mut parts, thread) = read_parts(path);
    let mut seen: Vec<FileEntry> = Vec::new();
    let mut manifest: Option<Manifest> = None;
    while let Some(part) = parts.recv().await {
        let part = part?;
        if manifest.is_some() {
            return Err(bad_archive(format!(
                "{} comes after the manifest",
                part.path
            )));
        }
        if part.path == MANIFEST {
            manifest = Some(
                serde_json::from_slice(&part.bytes)
                    .map_err(|e| bad_archive(format!("the manifest does not decode: {e}")))?,
            );
            continue;
        }
        if let Some(digest) = part.path.strip_prefix(&format!("{ARCHIVES}/")) {
            let expected = PackageDigest::parse(digest).map_err(bad_archive)?;
            if PackageDigest::of(&part.bytes) != expected {
                return Err(bad_archive(format!(
                    "package archive {digest} does not have that digest"
                )));
            }
        }
        seen.push(FileEntry {
            records: 0,
            bytes: part.bytes.len() as u64,
            sha256: hex_sha256(&part.bytes),
            path: part.path,
        });
    }
    let _ = thread.await;
    let manifest = manifest.ok_or_else(|| bad_archive("it has no manifest (cut short?)"))?;
    if manifest.format != FORMAT {
        return Err(Error::invalid(format!(
            "backup format {} is not the {FORMAT} this version reads",
            manifest.format
        )));
    }
    if seen.len() != manifest.files.len() {
        return Err(bad_archive(format!(
            "the manifest lists {} files, the archive has {}",
            manifest.files.len(),
            seen.len()
        )));
    }
    for (found, listed) in seen.iter().zip(&manifest.files) {
        if found.path != listed.path || found.sha256 != listed.sha256 || found.bytes != listed.bytes
        {
            return Err(bad_archive(format!(
                "{} does not match the manifest ({} bytes, sha256 {})",
                listed.path, found.bytes, found.sha256
            )));
        }
    }
    Ok(manifest)
}

/// What the target holds that a restore would overwrite: empty for an empty target.
pub async fn configuration_present(backends: &Backends) -> Result<Vec<String>> {
    let mut present = Vec::new();
    let mut note = |what: &str, n: usize| {
        if n > 0 {
            present.push(format!("{n} {what}"));
        }
    };
    note("handlers", backends.registry.table().await?.handlers.len());
    note(
        "package versions",
        backends.state.list_package_versions(None).await?.len(),
    );
    note("schedules", backends.schedules.table().await?.entries.len());
    note("webhooks", backends.hooks.table().await?.entries.len());
    note(
        "chat bundles",
        backends.bundles.table().await?.entries.len(),
    );
    note(
        "notification rules",
        backends.notification_rules.table().await?.entries.len(),
    );
    note("workflows", backends.workflows.table().await?.entries.len());
    note("secrets", backends.secrets.secrets().await?.len());
    Ok(present)
}

fn lines<T: DeserializeOwned>(part: &Part) -> Result<Vec<T>> {
    part.bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_slice(line)
                .map_err(|e| bad_archive(format!("a record of {} does not decode: {e}", part.path)))
        })
        .collect()
}

fn expect_for(force: bool) -> Expect {
    if force {
        Expect::Any
    } else {
        Expect::Absent
    }
}

async fn put_all<T: Entry>(
    registry: &dyn Registry<T>,
    entries: Vec<T>,
    force: bool,
) -> Result<u64> {
    let mut n = 0;
    for entry in entries {
        registry
            .put(&entry, expect_for(force))
            .await
            .map_err(|e| e.context(format!("restoring {} {}", T::KIND, entry.name())))?;
        n += 1;
    }
    Ok(n)
}

/// The state events that rebuild a finished `execution` in a store that just created it.
fn rebuild(execution: &Execution) -> Vec<StateEvent> {
    let mut events = Vec::new();
    let last = execution.attempts;
    for record in &execution.attempt_history {
        let started = if record.attempt == last {
            execution.started_at.unwrap_or(
                record.finished_at - chrono::Duration::microseconds(record.duration_us as i64),
            )
        } else {
            record.finished_at - chrono::Duration::microseconds(record.duration_us as i64)
        };
        events.push(StateEvent::Started {
            execution_id: execution.id.clone(),
            attempt: record.attempt,
            at: started,
            executor: "restore".to_string(),
        });
        events.push(match (&record.failure, record.status) {
            (None, _) | (_, ExecutionStatus::Succeeded) => StateEvent::Succeeded {
                execution_id: execution.id.clone(),
                attempt: record.attempt,
                at: record.finished_at,
                duration_us: record.duration_us,
                output: execution.output.clone(),
                measurements: record.measurements.clone(),
            },
            (Some(failure), _) => StateEvent::Failed {
                execution_id: execution.id.clone(),
                attempt: record.attempt,
                at: record.finished_at,
                duration_us: record.duration_us,
                failure: failure.clone(),
                retry_at: record.retry_at,
                measurements: record.measurements.clone(),
                dead_letter: None,
            },
        });
    }
    events
}

/// Restores the archive at `path` into `backends`: checks it whole first, refuses a target
/// with configuration unless `options.force`, writes every section, then verifies.
pub async fn restore(
    backends: &Backends,
    path: &Path,
    options: RestoreOptions,
) -> Result<RestoreReport> {
    let manifest = verify_archive(path).await?;
    let present = configuration_present(backends).await?;
    if !present.is_empty() && !options.force {
        return Err(Error::conflict(format!(
            "the target is not empty ({}): restore into an empty deployment, or force it to replace entries of the same name",
            present.join(", ")
        )));
    }
    let force = options.force;
    let mut report = RestoreReport::default();
    let (mut parts, thread) = read_parts(path);
    while let Some(part) = parts.recv().await {
        let part = part?;
        if part.path == MANIFEST {
            continue;
        }
        let section = part
            .path
            .split_once('/')
            .map(|(s, _)| s.to_string())
            .unwrap_or_default();
        let (restored, kept) = apply(backends, &section, &part, force)
            .await
            .map_err(|e| e.context(format!("restoring {}", part.path)))?;
        *report.restored.entry(section.clone()).or_insert(0) += restored;
        if kept > 0 {
            *report.kept.entry(section).or_insert(0) += kept;
        }
    }
    let _ = thread.await;
    verify_target(backends, &manifest, &mut report).await?;
    report.manifest = Some(manifest);
    tracing::info!(restored = ?report.restored, kept = ?report.kept, "backup restored");
    Ok(report)
}

/// Writes one part of `section`; how many records it wrote and how many it left as they were.
async fn apply(backends: &Backends, section: &str, part: &Part, force: bool) -> Result<(u64, u64)> {
    let mut kept = 0;
    let restored = match section {
        ARCHIVES => {
            let digest = PackageDigest::of(&part.bytes);
            if !backends.packages.exists(&digest).await? {
                backends
                    .packages
                    .put(&digest, bytes::Bytes::from(part.bytes.clone()))
                    .await?;
            }
            1
        }
        "packages" => {
            let versions: Vec<PackageVersion> = lines(part)?;
            for version in &versions {
                match backends.state.add_package_version(version).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::Conflict => kept += 1,
                    Err(e) => return Err(e),
                }
            }
            versions.len() as u64 - kept
        }
        "aliases" => {
            let aliases: Vec<PackageAlias> = lines(part)?;
            for alias in &aliases {
                backends
                    .state
                    .set_alias(&alias.package, &alias.alias, &alias.version)
                    .await?;
            }
            aliases.len() as u64
        }
        "package-owners" => {
            let owners: Vec<OwnerRecord> = lines(part)?;
            for owner in &owners {
                let subject = Subject::parse(&owner.owner)?;
                backends
                    .identity
                    .set_package_owner(&owner.package, &subject)
                    .await?;
            }
            owners.len() as u64
        }
        "handlers" => {
            let handlers: Vec<crate::handler::Handler> = lines(part)?;
            for handler in &handlers {
                backends
                    .registry
                    .put(handler, expect_for(force))
                    .await
                    .map_err(|e| e.context(format!("restoring handler {}", handler.name)))?;
            }
            handlers.len() as u64
        }
        "handler-history" => {
            let changes: Vec<HandlerChange> = lines(part)?;
            for change in &changes {
                backends.state.record_handler_change(change).await?;
            }
            changes.len() as u64
        }
        "schedules" => put_all(backends.schedules.as_ref(), lines(part)?, force).await?,
        "hooks" => put_all(backends.hooks.as_ref(), lines(part)?, force).await?,
        "bundles" => put_all(backends.bundles.as_ref(), lines(part)?, force).await?,
        "notification-rules" => {
            put_all(backends.notification_rules.as_ref(), lines(part)?, force).await?
        }
        "workflows" => put_all(backends.workflows.as_ref(), lines(part)?, force).await?,
        "accounts" => {
            let accounts: Vec<AccountRecord> = lines(part)?;
            let mut n = 0;
            for record in accounts {
                let mut account = record.account;
                account.password_hash = record.password_hash;
                if backends.identity.account(&account.name).await?.is_some() {
                    if force {
                        backends.identity.update_account(&account).await?;
                        n += 1;
                    } else {
                        kept += 1;
                    }
                } else {
                    backends.identity.create_account(&account).await?;
                    n += 1;
                }
            }
            n
        }
        "tokens" => {
            let tokens: Vec<TokenBackup> = lines(part)?;
            let mut n = 0;
            for record in tokens {
                let mut token = record.token;
                token.secret_hash = record.secret_hash;
                if backends.identity.token(&token.id).await?.is_some() {
                    kept += 1;
                } else {
                    backends.identity.create_token(&token).await?;
                    n += 1;
                }
            }
            n
        }
        "rules" => {
            let rules: Vec<RuleRecord> = lines(part)?;
            let existing = backends.identity.rules().await?;
            let mut n = 0;
            for record in rules {
                if existing.iter().any(|stored| stored.rule == record.rule) {
                    kept += 1;
                    continue;
                }
                backends
                    .identity
                    .add_rule(&record.rule, &record.created_by, record.created_at)
                    .await?;
                n += 1;
            }
            n
        }
        "secrets" => {
            let secrets: Vec<SecretBackup> = lines(part)?;
            for secret in &secrets {
                let sealed = base64::engine::general_purpose::STANDARD
                    .decode(&secret.sealed)
                    .map_err(|e| bad_archive(format!("secret {}: {e}", secret.meta.name)))?;
                backends
                    .secrets
                    .put_secret(&SecretRecord {
                        meta: secret.meta.clone(),
                        sealed,
                    })
                    .await?;
            }
            secrets.len() as u64
        }
        "schedule-ticks" => {
            let ticks: Vec<TickRecord> = lines(part)?;
            for tick in &ticks {
                backends.ticks.claim_tick(&tick.schedule, tick.at).await?;
            }
            ticks.len() as u64
        }
        "executions" => {
            let executions: Vec<Execution> = lines(part)?;
            let created = backends.state.create_executions(&executions).await?;
            let mut events = Vec::new();
            let mut n = 0;
            for (execution, created) in executions.iter().zip(created) {
                if created == crate::store::Created::New {
                    events.extend(rebuild(execution));
                    n += 1;
                } else {
                    kept += 1;
                }
            }
            backends.state.apply_states(&events).await?;
            n
        }
        "logs" => {
            let logs: Vec<LogLine> = lines(part)?;
            backends.sink.store_logs(&logs).await?;
            logs.len() as u64
        }
        "runs" => {
            let runs: Vec<Run> = lines(part)?;
            let mut n = 0;
            for run in &runs {
                if backends.runs.create_run(run).await? {
                    let ids: Vec<_> = run
                        .steps
                        .iter()
                        .flat_map(|s| s.executions.iter().cloned())
                        .collect();
                    backends.runs.index_step_executions(&run.id, &ids).await?;
                    n += 1;
                } else {
                    kept += 1;
                }
            }
            n
        }
        "audit" => {
            let records: Vec<AuditRecord> = lines(part)?;
            for record in &records {
                backends.identity.append_audit(record).await?;
            }
            records.len() as u64
        }
        other => {
            return Err(bad_archive(format!(
                "unknown section {other:?} (written by a newer FerrisFX?)"
            )))
        }
    };
    Ok((restored, kept))
}

/// Counts, from the target's own backends, what the manifest says the archive held, and reads
/// every package archive back with its digest.
async fn verify_target(
    backends: &Backends,
    manifest: &Manifest,
    report: &mut RestoreReport,
) -> Result<()> {
    let versions = backends.state.list_package_versions(None).await?;
    let mut found: BTreeMap<&str, u64> = BTreeMap::new();
    found.insert(
        "handlers",
        backends.registry.table().await?.handlers.len() as u64,
    );
    found.insert("packages", versions.len() as u64);
    found.insert(
        "schedules",
        backends.schedules.table().await?.entries.len() as u64,
    );
    found.insert("hooks", backends.hooks.table().await?.entries.len() as u64);
    found.insert(
        "bundles",
        backends.bundles.table().await?.entries.len() as u64,
    );
    found.insert(
        "notification-rules",
        backends.notification_rules.table().await?.entries.len() as u64,
    );
    found.insert(
        "workflows",
        backends.workflows.table().await?.entries.len() as u64,
    );
    found.insert("accounts", backends.identity.accounts().await?.len() as u64);
    found.insert("tokens", backends.identity.tokens(None).await?.len() as u64);
    found.insert("secrets", backends.secrets.secrets().await?.len() as u64);
    for (section, count) in &found {
        let expected = manifest.counts.get(*section).copied().unwrap_or(0);
        if *count < expected {
            return Err(Error::internal(format!(
                "after the restore the target has {count} {section}, the backup {expected}"
            )));
        }
        report.verified.insert(section.to_string(), *count);
    }
    let mut digests: Vec<&PackageDigest> = versions.iter().map(|v| &v.digest).collect();
    digests.sort();
    digests.dedup();
    for file in manifest
        .files
        .iter()
        .filter(|f| f.path.starts_with(ARCHIVES))
    {
        let digest = PackageDigest::parse(&file.path[ARCHIVES.len() + 1..])?;
        let bytes = backends.packages.get(&digest).await.map_err(|e| {
            e.context(format!(
                "reading package archive {digest} back after the restore"
            ))
        })?;
        if PackageDigest::of(&bytes) != digest {
            return Err(Error::internal(format!(
                "package archive {digest} reads back with another digest after the restore"
            )));
        }
        report.archives_verified += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
