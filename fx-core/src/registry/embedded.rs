//! The embedded registry: one JSON file per kind of entry in the data directory
//! (`handlers.json`, `schedules.json`), watched for edits.
//!
//! The file reads
//! `{ "revision": N, "handlers": { "<name>": { "revision": r, "handler": { ... } } } }`
//! (`schedules` and `schedule` for schedules).
//! Every write bumps the global revision and stamps the written entry with it; the file is
//! replaced atomically (temporary file, then rename). The file may be edited by hand: a
//! background task polls it and reloads it when it changes, stamping changed entries with a new
//! revision. An entry that is not valid is listed in [`Table::invalid`] and kept in the file
//! untouched.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{Entry, Expect, InvalidHandler, Stored, Table};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::handler::Handler;

/// How often the file is checked for edits made outside this process.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Entries of one kind (handlers by default) in a JSON file.
pub struct FileRegistry<T: Entry = Handler> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    /// The file.
    path: PathBuf,
    /// The document as last read or written; a writer holds it for its whole write.
    loaded: tokio::sync::Mutex<Loaded>,
    /// The table of the current document, for readers and watchers.
    table: watch::Sender<Arc<Table<T>>>,
    kind: PhantomData<fn() -> T>,
}

struct Loaded {
    /// The document.
    doc: Document,
    /// Modification time and length of the file when last read or written; `None` if absent.
    stamp: Option<Stamp>,
    /// Why the file on disk could not be read at the last poll, if it could not.
    broken: Option<String>,
}

/// The file's content. Entries are kept as raw JSON so that a hand-edited entry that does not
/// parse survives every rewrite.
#[derive(Debug, Clone, Default, PartialEq)]
struct Document {
    revision: u64,
    entries: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl FileRegistry {
    /// Opens the handler registry at `path`; see [`FileRegistry::open_entries`].
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_entries(path).await
    }
}

impl<T: Entry> FileRegistry<T> {
    /// Opens the registry at `path` (a missing file is an empty registry) and starts watching
    /// the file. A file that is not a registry document is refused with `Invalid`.
    pub async fn open_entries(path: &Path) -> Result<Self> {
        let path = path.to_path_buf();
        let (stamp, bytes) = blocking({
            let path = path.clone();
            move || read_file(&path)
        })
        .await?;
        let doc = match bytes {
            Some(bytes) => parse_document::<T>(&path, &bytes)?,
            None => Document::default(),
        };
        let table = build_table::<T>(&doc);
        log_invalid(&path, &table);
        tracing::info!(path = %path.display(), kind = T::COLLECTION, entries = table.entries.len(), revision = table.revision, "registry opened");
        let (table, _) = watch::channel(Arc::new(table));
        let inner = Arc::new(Inner {
            path,
            loaded: tokio::sync::Mutex::new(Loaded {
                doc,
                stamp,
                broken: None,
            }),
            table,
            kind: PhantomData,
        });
        spawn_poller(Arc::downgrade(&inner));
        Ok(FileRegistry { inner })
    }
}

fn spawn_poller<T: Entry>(inner: Weak<Inner<T>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else {
                break;
            };
            let mut loaded = inner.loaded.lock().await;
            if let Err(e) = inner.refresh(&mut loaded).await {
                tracing::warn!(path = %inner.path.display(), error = %e.chain(), "checking the registry file failed");
            }
        }
    });
}

impl<T: Entry> Inner<T> {
    /// Reloads the file if it changed on disk since it was last read or written.
    async fn refresh(&self, loaded: &mut Loaded) -> Result<()> {
        let current = blocking({
            let path = self.path.clone();
            move || stamp_of(&path)
        })
        .await?;
        if current == loaded.stamp {
            return Ok(());
        }
        let (stamp, bytes) = blocking({
            let path = self.path.clone();
            move || read_file(&path)
        })
        .await?;
        loaded.stamp = stamp;
        let fresh = match bytes {
            None => Document::default(),
            Some(bytes) => match parse_document::<T>(&self.path, &bytes) {
                Ok(doc) => doc,
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e.chain(), "the registry file changed but cannot be read; keeping the entries loaded before");
                    loaded.broken = Some(e.chain());
                    return Ok(());
                }
            },
        };
        loaded.broken = None;
        if let Some(doc) = merge_external::<T>(&loaded.doc, fresh) {
            tracing::info!(path = %self.path.display(), revision = doc.revision, "registry file edited outside, reloaded");
            loaded.doc = doc;
            self.publish(&loaded.doc);
        }
        Ok(())
    }

    /// Reloads the file now if it changed (a stat when it did not).
    async fn refresh_now(&self) -> Result<()> {
        let mut loaded = self.loaded.lock().await;
        self.refresh(&mut loaded).await
    }

    fn publish(&self, doc: &Document) {
        let table = build_table::<T>(doc);
        log_invalid(&self.path, &table);
        self.table.send_replace(Arc::new(table));
    }

    /// Applies `change` to the current document at the next revision and writes the file.
    async fn write<R>(&self, change: impl FnOnce(&mut Document, u64) -> Result<R>) -> Result<R> {
        let mut loaded = self.loaded.lock().await;
        self.refresh(&mut loaded).await?;
        if let Some(reason) = &loaded.broken {
            return Err(Error::unavailable(format!(
                "{} file {} cannot be read, fix or remove it before writing: {reason}",
                T::COLLECTION,
                self.path.display()
            )));
        }
        let mut doc = loaded.doc.clone();
        let revision = doc.revision + 1;
        let out = change(&mut doc, revision)?;
        doc.revision = revision;
        let bytes = render::<T>(&doc)?;
        let stamp = blocking({
            let path = self.path.clone();
            move || write_atomically(&path, &bytes)
        })
        .await?;
        loaded.doc = doc;
        loaded.stamp = stamp;
        self.publish(&loaded.doc);
        Ok(out)
    }
}

super::handler_registry_of!(FileRegistry<Handler>);

#[async_trait]
impl<T: Entry> super::Registry<T> for FileRegistry<T> {
    /// The table as the file has it now: another process sharing the data directory may have
    /// written it since the last poll.
    async fn table(&self) -> Result<Table<T>> {
        self.inner.refresh_now().await?;
        Ok(Table::clone(&self.inner.table.borrow()))
    }

    async fn revision(&self) -> Result<u64> {
        self.inner.refresh_now().await?;
        Ok(self.inner.table.borrow().revision)
    }

    async fn get(&self, name: &str) -> Result<Option<Stored<T>>> {
        let table = Arc::clone(&self.inner.table.borrow());
        Ok(table
            .entries
            .iter()
            .find(|h| h.entry.name() == name)
            .cloned())
    }

    async fn put(&self, entry: &T, expect: Expect) -> Result<u64> {
        entry.validate()?;
        let name = entry.name().to_string();
        let kind = T::KIND;
        let value = serde_json::to_value(entry).kind_context(ErrorKind::Internal, || {
            format!("encoding {kind} {name} as json")
        })?;
        let revision = self
            .inner
            .write(|doc, revision| {
                check_expect(kind, doc, &name, expect)?;
                let mut stored = serde_json::Map::new();
                stored.insert("revision".into(), json!(revision));
                stored.insert(kind.into(), value);
                doc.entries.insert(name.clone(), Value::Object(stored));
                Ok(revision)
            })
            .await?;
        tracing::info!(kind, name = %name, revision, "registry entry stored");
        Ok(revision)
    }

    async fn delete(&self, name: &str, expect: Expect) -> Result<()> {
        let kind = T::KIND;
        self.inner
            .write(|doc, _| {
                if !doc.entries.contains_key(name) {
                    return Err(Error::not_found(format!("{kind} {name} not found")));
                }
                check_expect(kind, doc, name, expect)?;
                doc.entries.remove(name);
                Ok(())
            })
            .await?;
        tracing::info!(kind, name = %name, "registry entry deleted");
        Ok(())
    }

    async fn watch(&self, after_revision: u64, wait: Duration) -> Result<Table<T>> {
        let mut rx = self.inner.table.subscribe();
        // Elapsing is the normal end of a blocking query that saw no change; the sender lives
        // as long as `self`, so waiting cannot fail otherwise.
        let _ = tokio::time::timeout(wait, rx.wait_for(|t| t.revision > after_revision)).await;
        let table = Table::clone(&rx.borrow());
        Ok(table)
    }
}

fn check_expect(kind: &str, doc: &Document, name: &str, expect: Expect) -> Result<()> {
    let stored = doc
        .entries
        .get(name)
        .map(|entry| entry_revision(doc, entry));
    match (expect, stored) {
        (Expect::Any, _) | (Expect::Absent, None) => Ok(()),
        (Expect::Absent, Some(_)) => Err(Error::conflict(format!("{kind} {name} already exists"))),
        (Expect::Revision(_), None) => Err(Error::not_found(format!("{kind} {name} not found"))),
        (Expect::Revision(expected), Some(stored)) if expected == stored => Ok(()),
        (Expect::Revision(expected), Some(stored)) => Err(Error::conflict(format!(
            "{kind} {name} changed since revision {expected}: it is at revision {stored}"
        ))),
    }
}

/// An entry's revision; an entry written by hand without one counts as of the file's revision.
fn entry_revision(doc: &Document, entry: &Value) -> u64 {
    entry
        .get("revision")
        .and_then(Value::as_u64)
        .unwrap_or(doc.revision)
}

/// The part of an entry whose change counts as an edit.
fn entry_content<T: Entry>(entry: &Value) -> &Value {
    entry.get(T::KIND).unwrap_or(entry)
}

/// The document after an outside edit of the file turned `current` into `fresh`, or `None`
/// when no entry changed. Changed entries are stamped with the new revision.
fn merge_external<T: Entry>(current: &Document, fresh: Document) -> Option<Document> {
    let changed: Vec<String> = fresh
        .entries
        .iter()
        .filter(|(name, entry)| {
            current.entries.get(*name).map(entry_content::<T>) != Some(entry_content::<T>(entry))
        })
        .map(|(name, _)| name.clone())
        .collect();
    let removed = current
        .entries
        .keys()
        .any(|name| !fresh.entries.contains_key(name));
    if changed.is_empty() && !removed {
        return None;
    }
    let revision = current.revision.max(fresh.revision) + 1;
    let mut entries = fresh.entries;
    for (name, entry) in entries.iter_mut() {
        if changed.contains(name) {
            if let Some(object) = entry.as_object_mut() {
                object.insert("revision".into(), json!(revision));
            }
        } else if let Some(kept) = current.entries.get(name) {
            *entry = kept.clone();
        }
    }
    Some(Document { revision, entries })
}

fn build_table<T: Entry>(doc: &Document) -> Table<T> {
    let mut table = Table {
        revision: doc.revision,
        ..Table::default()
    };
    for (name, entry) in &doc.entries {
        match parse_entry::<T>(doc, name, entry) {
            Ok(stored) => table.entries.push(stored),
            Err(reason) => table.invalid.push(InvalidHandler {
                name: name.clone(),
                reason,
            }),
        }
    }
    table
}

fn parse_entry<T: Entry>(
    doc: &Document,
    name: &str,
    entry: &Value,
) -> std::result::Result<Stored<T>, String> {
    let Some(object) = entry.as_object() else {
        return Err("entry is not a json object".into());
    };
    let revision = match object.get("revision") {
        None => doc.revision,
        Some(value) => value
            .as_u64()
            .ok_or("entry revision is not a non-negative integer")?,
    };
    let kind = T::KIND;
    let raw = object
        .get(kind)
        .ok_or_else(|| format!("entry has no {kind:?} object"))?;
    let entry: T =
        serde_json::from_value(raw.clone()).map_err(|e| format!("not a valid {kind}: {e}"))?;
    if entry.name() != name {
        return Err(format!(
            "{kind} name {:?} does not match its key {name:?}",
            entry.name()
        ));
    }
    entry.validate().map_err(|e| e.message().to_string())?;
    Ok(Stored { entry, revision })
}

fn log_invalid<T: Entry>(path: &Path, table: &Table<T>) {
    for entry in &table.invalid {
        tracing::warn!(path = %path.display(), kind = T::KIND, name = %entry.name, reason = %entry.reason, "invalid registry entry skipped");
    }
}

fn parse_document<T: Entry>(path: &Path, bytes: &[u8]) -> Result<Document> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Document::default());
    }
    let invalid = |reason: String| {
        Error::invalid(format!(
            "{} file {} is not a valid registry document: {reason}",
            T::COLLECTION,
            path.display()
        ))
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    let Value::Object(mut object) = value else {
        return Err(invalid("not a json object".into()));
    };
    let revision = match object.get("revision") {
        None => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| invalid("revision is not a non-negative integer".into()))?,
    };
    let entries = match object.remove(T::COLLECTION) {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(entries)) => entries.into_iter().collect(),
        Some(_) => return Err(invalid(format!("{:?} is not a json object", T::COLLECTION))),
    };
    Ok(Document { revision, entries })
}

fn render<T: Entry>(doc: &Document) -> Result<Vec<u8>> {
    let mut value = serde_json::Map::new();
    value.insert("revision".into(), json!(doc.revision));
    value.insert(T::COLLECTION.into(), json!(doc.entries));
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(value))
        .kind_context(ErrorKind::Internal, || "encoding the registry file".into())?;
    bytes.push(b'\n');
    Ok(bytes)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .kind_context(ErrorKind::Internal, || "registry file task failed".into())?
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::unavailable(format!("{what} registry file {}", path.display())).with_source(e)
}

fn stamp_of(path: &Path) -> Result<Option<Stamp>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("checking", path, e)),
    }
}

/// The file's stamp and bytes, or nothing if it does not exist.
fn read_file(path: &Path) -> Result<(Option<Stamp>, Option<Vec<u8>>)> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, None)),
        Err(e) => return Err(io_error("opening", path, e)),
    };
    let meta = file.metadata().map_err(|e| io_error("checking", path, e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| io_error("reading", path, e))?;
    let stamp = Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    };
    Ok((Some(stamp), Some(bytes)))
}

/// Replaces the file with `bytes` through a temporary file and a rename; returns its stamp.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<Option<Stamp>> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_error("creating the directory of", path, e))?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("handlers.json");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!(".{file_name}.tmp-{}-{n}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io_error("writing", path, e));
    }
    stamp_of(path)
}

#[cfg(test)]
mod tests;
