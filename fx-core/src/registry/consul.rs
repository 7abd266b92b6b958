//! The Consul registry: one key per entry under a prefix of Consul KV (handlers under
//! `ferrisfx/handlers/`, schedules under `ferrisfx/schedules/`), the entry as JSON in the value,
//! its revision the key's `ModifyIndex`.
//!
//! A thin client over Consul's HTTP API with `reqwest`: the `consul-rs` crate has no blocking
//! queries with an index and no check-and-set, the two things this port is built on.
//!
//! - [`Registry::table`] lists the prefix (`GET /v1/kv/<prefix>?recurse`); a 404 is an
//!   empty table; the table's revision is the `X-Consul-Index` of the listing.
//! - [`Registry::watch`] is the same listing as a blocking query (`?index=<n>&wait=<d>`).
//!   A return with an unchanged index (a timeout, or an idempotent write) waits again for the
//!   rest of the caller's wait; an index lower than the caller's (a snapshot restore, tombstones
//!   reaped) is a reset, as Consul's documentation prescribes: the table is returned at once, so
//!   the caller continues from the lower index.
//! - [`Registry::put`] writes through the transaction endpoint (`PUT /v1/txn`) with the
//!   `set` or `cas` verb (index 0 to create only, the stored `ModifyIndex` to update), because
//!   its result carries the new `ModifyIndex`: `PUT /v1/kv/<key>?cas=` answers only `true` or
//!   `false`, and reading the index afterwards could return another editor's write.
//! - [`Registry::delete`] reads the key (Consul deletes a missing key without complaint)
//!   and deletes it with `DELETE /v1/kv/<key>?cas=<ModifyIndex>`.
//!
//! An entry that is not a valid handler (hand-written, written by a newer version) is listed in
//! [`Table::invalid`] with the reason and logged once, never an error. The ACL token goes
//! in the `X-Consul-Token` header, marked sensitive, and appears in no message or log.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::{Entry, Expect, InvalidHandler, Stored, Table};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::handler::Handler;

mod settings;
pub use settings::ConsulSettings;

/// The header carrying Consul's index of a read.
const INDEX_HEADER: &str = "x-consul-index";
/// The header carrying the ACL token.
const TOKEN_HEADER: &str = "x-consul-token";
/// The longest wait Consul accepts for a blocking query.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// How often an unconditional delete retries when the handler keeps changing under it.
const DELETE_ATTEMPTS: usize = 5;

/// Entries of one kind (handlers by default) in Consul KV.
pub struct ConsulRegistry<T: Entry = Handler> {
    http: reqwest::Client,
    /// The agent's base URL.
    base: Url,
    /// The address for messages: the base URL without user info.
    shown: String,
    /// The key prefix, ending with `/`.
    prefix: String,
    token: Option<HeaderValue>,
    datacenter: Option<String>,
    timeout: Duration,
    /// Invalid entries already logged, with the index they were logged at.
    logged_invalid: Mutex<BTreeMap<String, u64>>,
    kind: PhantomData<fn() -> T>,
}

/// One entry of a KV read, as Consul encodes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KvEntry {
    key: String,
    value: Option<String>,
    modify_index: u64,
}

/// The answer of `PUT /v1/txn`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnResponse {
    #[serde(default)]
    results: Option<Vec<TxnResult>>,
    #[serde(default)]
    errors: Option<Vec<TxnError>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnResult {
    #[serde(rename = "KV")]
    kv: Option<KvEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnError {
    what: String,
}

impl ConsulRegistry {
    /// The handler registry over the Consul agent of `settings`, under its `prefix`; see
    /// [`ConsulRegistry::under`].
    pub fn new(settings: &ConsulSettings) -> Result<Self> {
        Self::under(settings, &settings.prefix)
    }
}

impl ConsulRegistry<super::Schedule> {
    /// The schedule registry over the Consul agent of `settings`, under its
    /// `schedules_prefix`.
    pub fn schedules(settings: &ConsulSettings) -> Result<Self> {
        Self::under(settings, &settings.schedules_prefix)
    }
}

impl ConsulRegistry<crate::notify::Rule> {
    /// The notification rule registry over the Consul agent of `settings`, under its
    /// `notifications_prefix`.
    pub fn notifications(settings: &ConsulSettings) -> Result<Self> {
        Self::under(settings, &settings.notifications_prefix)
    }
}

impl ConsulRegistry<crate::workflow::Workflow> {
    /// The workflow registry over the Consul agent of `settings`, under its
    /// `workflows_prefix`.
    pub fn workflows(settings: &ConsulSettings) -> Result<Self> {
        Self::under(settings, &settings.workflows_prefix)
    }
}

impl ConsulRegistry<crate::chat::Bundle> {
    /// The chat command bundle registry over the Consul agent of `settings`, under its
    /// `bundles_prefix`.
    pub fn bundles(settings: &ConsulSettings) -> Result<Self> {
        Self::under(settings, &settings.bundles_prefix)
    }
}

impl ConsulRegistry<crate::hook::Hook> {
    /// The webhook registry over the Consul agent of `settings`, under its `hooks_prefix`.
    pub fn hooks(settings: &ConsulSettings) -> Result<Self> {
        Self::under(settings, &settings.hooks_prefix)
    }
}

impl<T: Entry> ConsulRegistry<T> {
    /// A registry of the entries under `prefix` of the Consul agent of `settings`; validates
    /// the settings but does not contact Consul (an unreachable agent shows in the first call,
    /// as `Unavailable`).
    pub fn under(settings: &ConsulSettings, prefix: &str) -> Result<Self> {
        settings.validate()?;
        let base = Url::parse(&settings.address).map_err(|e| {
            Error::invalid(format!(
                "consul address {:?} is not a url",
                settings.address
            ))
            .with_source(e)
        })?;
        let mut shown = base.clone();
        // Neither can fail on an http(s) URL with a host, which validate checked.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let shown = shown.as_str().trim_end_matches('/').to_string();
        let token = match &settings.token {
            Some(token) => {
                let mut value = HeaderValue::from_str(token).map_err(|_| {
                    Error::invalid("consul token contains characters not allowed in an http header")
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let timeout = Duration::from_millis(settings.timeout_ms);
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .build()
            .kind_context(ErrorKind::Internal, || {
                format!("building the http client of consul at {shown}")
            })?;
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        tracing::info!(address = %shown, prefix = %prefix, kind = T::COLLECTION, datacenter = ?settings.datacenter, "consul registry configured");
        Ok(ConsulRegistry {
            http,
            base,
            shown,
            prefix,
            token,
            datacenter: settings.datacenter.clone(),
            timeout,
            logged_invalid: Mutex::new(BTreeMap::new()),
            kind: PhantomData,
        })
    }

    /// The URL of `/v1/<path…>/<key>` (no key: `/v1/<path…>`) with the datacenter set.
    fn url(&self, path: &[&str], key: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path);
            if !key.is_empty() {
                segments.extend(key.split('/'));
            }
        }
        if let Some(dc) = &self.datacenter {
            url.query_pairs_mut().append_pair("dc", dc);
        }
        url
    }

    fn request(&self, method: Method, url: Url, timeout: Duration) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, url).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.header(TOKEN_HEADER, token.clone());
        }
        request
    }

    /// Sends `request`; a failure to reach Consul is `Unavailable`, naming the address.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response> {
        request.send().await.map_err(|e| {
            let reason = if e.is_timeout() {
                "timed out"
            } else {
                "unreachable"
            };
            Error::unavailable(format!("{what}: consul at {} {reason}", self.shown)).with_source(e)
        })
    }

    /// The error of an unexpected answer, with the start of its body.
    async fn unexpected(&self, response: reqwest::Response, what: &str) -> Error {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let body: String = body.trim().chars().take(200).collect();
        let message = format!("{what}: consul at {} answered {status}: {body}", self.shown);
        match status {
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Error::unavailable(format!(
                "{message} (check the acl token's key_prefix policy on {:?})",
                self.prefix
            )),
            StatusCode::PAYLOAD_TOO_LARGE => Error::invalid(message),
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                Error::unavailable(message)
            }
            _ => Error::internal(message),
        }
    }

    /// Lists the prefix; with `block = Some((index, wait))` as a blocking query. Returns the
    /// listing's index (at least 1, as Consul's documentation prescribes) and its entries.
    async fn list(&self, block: Option<(u64, Duration)>) -> Result<(u64, Vec<KvEntry>)> {
        let mut url = self.url(&["v1", "kv"], &self.prefix);
        url.query_pairs_mut().append_key_only("recurse");
        let mut timeout = self.timeout;
        if let Some((index, wait)) = block {
            url.query_pairs_mut()
                .append_pair("index", &index.to_string())
                .append_pair("wait", &format!("{}ms", wait.as_millis()));
            // Consul adds up to wait/16 of jitter to a blocking query.
            timeout += wait + wait / 16;
        }
        let what = format!("listing {} under {:?}", T::COLLECTION, self.prefix);
        let response = self
            .send(self.request(Method::GET, url, timeout), &what)
            .await?;
        let status = response.status();
        if !(status == StatusCode::OK || status == StatusCode::NOT_FOUND) {
            return Err(self.unexpected(response, &what).await);
        }
        let index = consul_index(&response, &what, &self.shown)?;
        if status == StatusCode::NOT_FOUND {
            return Ok((index, Vec::new()));
        }
        let entries = response.json().await.map_err(|e| {
            Error::unavailable(format!(
                "{what}: reading the answer of consul at {}",
                self.shown
            ))
            .with_source(e)
        })?;
        Ok((index, entries))
    }

    /// The raw entry `name`, valid or not.
    async fn entry(&self, name: &str) -> Result<Option<KvEntry>> {
        let key = format!("{}{name}", self.prefix);
        let what = format!("reading {} {name} (key {key:?})", T::KIND);
        let response = self
            .send(
                self.request(Method::GET, self.url(&["v1", "kv"], &key), self.timeout),
                &what,
            )
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => {
                let entries: Vec<KvEntry> = response.json().await.map_err(|e| {
                    Error::unavailable(format!(
                        "{what}: reading the answer of consul at {}",
                        self.shown
                    ))
                    .with_source(e)
                })?;
                Ok(entries.into_iter().find(|e| e.key == key))
            }
            _ => Err(self.unexpected(response, &what).await),
        }
    }

    /// The table of a listing; logs invalid entries not logged before at their index.
    fn table_of(&self, index: u64, entries: Vec<KvEntry>) -> Table<T> {
        let mut table = Table {
            revision: index,
            ..Table::default()
        };
        let mut invalid_at = BTreeMap::new();
        for entry in entries {
            let Some(name) = entry.key.strip_prefix(&self.prefix) else {
                continue;
            };
            // The prefix itself, created as a folder by Consul's UI.
            if name.is_empty() {
                continue;
            }
            match parse_entry::<T>(name, &entry) {
                Ok(parsed) => table.entries.push(Stored {
                    entry: parsed,
                    revision: entry.modify_index,
                }),
                Err(reason) => {
                    invalid_at.insert(name.to_string(), entry.modify_index);
                    table.invalid.push(InvalidHandler {
                        name: name.to_string(),
                        reason,
                    });
                }
            }
        }
        table
            .entries
            .sort_by(|a, b| a.entry.name().cmp(b.entry.name()));
        let mut logged = self
            .logged_invalid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for invalid in &table.invalid {
            let index = invalid_at.get(&invalid.name).copied();
            if logged.get(&invalid.name).copied() != index {
                tracing::warn!(kind = T::KIND, name = %invalid.name, key = %format!("{}{}", self.prefix, invalid.name), reason = %invalid.reason, "invalid registry entry in consul skipped");
            }
        }
        *logged = invalid_at;
        table
    }

    /// Writes `value` as entry `name` in a transaction; returns the new `ModifyIndex`, or
    /// `None` when the check-and-set failed.
    async fn write(&self, name: &str, value: &[u8], cas: Option<u64>) -> Result<Option<u64>> {
        let key = format!("{}{name}", self.prefix);
        let value = base64::engine::general_purpose::STANDARD.encode(value);
        let op = match cas {
            None => json!({ "KV": { "Verb": "set", "Key": key, "Value": value } }),
            Some(index) => {
                json!({ "KV": { "Verb": "cas", "Key": key, "Value": value, "Index": index } })
            }
        };
        let what = format!("writing {} {name} (key {key:?})", T::KIND);
        let request = self
            .request(Method::PUT, self.url(&["v1", "txn"], ""), self.timeout)
            .header(CONTENT_TYPE, "application/json")
            .body(json!([op]).to_string());
        let response = self.send(request, &what).await?;
        let status = response.status();
        if !(status == StatusCode::OK || status == StatusCode::CONFLICT) {
            return Err(self.unexpected(response, &what).await);
        }
        let answer: TxnResponse = response.json().await.map_err(|e| {
            Error::unavailable(format!(
                "{what}: reading the answer of consul at {}",
                self.shown
            ))
            .with_source(e)
        })?;
        if status == StatusCode::CONFLICT {
            let errors = answer.errors.unwrap_or_default();
            // A transaction rolled back for another reason than a stale index is a failure.
            if cas.is_some() && errors.iter().all(|e| e.what.contains("index is stale")) {
                return Ok(None);
            }
            let reasons: Vec<String> = errors.into_iter().map(|e| e.what).collect();
            return Err(Error::internal(format!(
                "{what}: consul at {} rolled the write back: {}",
                self.shown,
                reasons.join("; ")
            )));
        }
        answer
            .results
            .unwrap_or_default()
            .into_iter()
            .find_map(|r| r.kv)
            .map(|kv| Some(kv.modify_index))
            .ok_or_else(|| {
                Error::internal(format!(
                    "{what}: consul at {} did not return the written entry",
                    self.shown
                ))
            })
    }

    /// Deletes entry `name` if its `ModifyIndex` is still `index`; whether it was.
    async fn delete_at(&self, name: &str, index: u64) -> Result<bool> {
        let key = format!("{}{name}", self.prefix);
        let mut url = self.url(&["v1", "kv"], &key);
        url.query_pairs_mut().append_pair("cas", &index.to_string());
        let what = format!("deleting {} {name} (key {key:?})", T::KIND);
        let response = self
            .send(self.request(Method::DELETE, url, self.timeout), &what)
            .await?;
        if response.status() != StatusCode::OK {
            return Err(self.unexpected(response, &what).await);
        }
        let text = response.text().await.map_err(|e| {
            Error::unavailable(format!(
                "{what}: reading the answer of consul at {}",
                self.shown
            ))
            .with_source(e)
        })?;
        Ok(text.trim() == "true")
    }

    /// The error of a failed check-and-set on entry `name` that expected `expect`.
    async fn refused(&self, name: &str, expect: Expect) -> Result<Error> {
        let kind = T::KIND;
        Ok(match (expect, self.entry(name).await?) {
            (Expect::Absent, _) => Error::conflict(format!("{kind} {name} already exists")),
            (_, None) => Error::not_found(format!("{kind} {name} not found")),
            (Expect::Revision(expected), Some(entry)) => Error::conflict(format!(
                "{kind} {name} changed since revision {expected}: it is at revision {}",
                entry.modify_index
            )),
            (Expect::Any, Some(entry)) => Error::conflict(format!(
                "{kind} {name} kept changing while being written (now at revision {})",
                entry.modify_index
            )),
        })
    }
}

/// The `X-Consul-Index` of a read, at least 1.
fn consul_index(response: &reqwest::Response, what: &str, shown: &str) -> Result<u64> {
    let index = response
        .headers()
        .get(INDEX_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            Error::internal(format!(
                "{what}: the answer of consul at {shown} has no valid X-Consul-Index header"
            ))
        })?;
    Ok(index.max(1))
}

/// The entry in a KV entry, or why it is not one.
fn parse_entry<T: Entry>(name: &str, entry: &KvEntry) -> std::result::Result<T, String> {
    let Some(value) = &entry.value else {
        return Err("the key has no value".into());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|e| format!("the value is not base64 as consul sends it: {e}"))?;
    let kind = T::KIND;
    let parsed: T =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a valid {kind}: {e}"))?;
    if parsed.name() != name {
        return Err(format!(
            "{kind} name {:?} does not match its key {name:?}",
            parsed.name()
        ));
    }
    parsed.validate().map_err(|e| e.message().to_string())?;
    Ok(parsed)
}

super::handler_registry_of!(ConsulRegistry<Handler>);

#[async_trait]
impl<T: Entry> super::Registry<T> for ConsulRegistry<T> {
    async fn table(&self) -> Result<Table<T>> {
        let (index, entries) = self.list(None).await?;
        Ok(self.table_of(index, entries))
    }

    async fn revision(&self) -> Result<u64> {
        Ok(super::Registry::<T>::table(self).await?.revision)
    }

    async fn get(&self, name: &str) -> Result<Option<Stored<T>>> {
        let Some(entry) = self.entry(name).await? else {
            return Ok(None);
        };
        Ok(parse_entry::<T>(name, &entry).ok().map(|parsed| Stored {
            entry: parsed,
            revision: entry.modify_index,
        }))
    }

    async fn put(&self, entry: &T, expect: Expect) -> Result<u64> {
        entry.validate()?;
        let name = entry.name();
        let kind = T::KIND;
        let value = serde_json::to_vec(entry).kind_context(ErrorKind::Internal, || {
            format!("encoding {kind} {name} as json")
        })?;
        let cas = match expect {
            Expect::Any => None,
            Expect::Absent => Some(0),
            // No stored handler is at revision 0, and `cas=0` would mean "create".
            Expect::Revision(0) => return Err(self.refused(name, expect).await?),
            Expect::Revision(revision) => Some(revision),
        };
        match self.write(name, &value, cas).await? {
            Some(revision) => {
                tracing::info!(kind, name = %name, revision, "registry entry stored in consul");
                Ok(revision)
            }
            None => Err(self.refused(name, expect).await?),
        }
    }

    async fn delete(&self, name: &str, expect: Expect) -> Result<()> {
        for _ in 0..DELETE_ATTEMPTS {
            let Some(entry) = self.entry(name).await? else {
                return Err(Error::not_found(format!("{} {name} not found", T::KIND)));
            };
            let index = match expect {
                Expect::Absent => {
                    return Err(Error::conflict(format!(
                        "{} {name} already exists",
                        T::KIND
                    )))
                }
                Expect::Revision(expected) if expected != entry.modify_index => {
                    return Err(Error::conflict(format!(
                        "{} {name} changed since revision {expected}: it is at revision {}",
                        T::KIND,
                        entry.modify_index
                    )))
                }
                Expect::Revision(_) | Expect::Any => entry.modify_index,
            };
            if self.delete_at(name, index).await? {
                tracing::info!(kind = T::KIND, name = %name, "registry entry deleted from consul");
                return Ok(());
            }
            if let Expect::Revision(_) = expect {
                return Err(self.refused(name, expect).await?);
            }
        }
        Err(self.refused(name, expect).await?)
    }

    async fn watch(&self, after_revision: u64, wait: Duration) -> Result<Table<T>> {
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            // `wait=0` would mean Consul's default of five minutes: read without blocking.
            if remaining < Duration::from_millis(1) || after_revision == 0 {
                return super::Registry::<T>::table(self).await;
            }
            let (index, entries) = self.list(Some((after_revision, remaining))).await?;
            if index < after_revision {
                tracing::debug!(
                    index,
                    after_revision,
                    "consul index went backwards; watching from the lower index"
                );
            }
            if index != after_revision || Instant::now() >= deadline {
                return Ok(self.table_of(index, entries));
            }
        }
    }
}

#[cfg(test)]
mod tests;
