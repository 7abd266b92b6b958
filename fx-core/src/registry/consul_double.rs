//! A test double of Consul's KV HTTP API, in process: no Consul server can be installed where
//! the tests run, so the Consul registry's tests (and the end-to-end tests) run against this.
//! It is not a Consul and never meant for a deployment.
//!
//! Written from Consul's API documentation, it is faithful in what the registry relies on:
//!
//! - `GET /v1/kv/<key>` and `?recurse`: a JSON array of `{LockIndex, Key, Flags, Value (base64,
//!   `null` when empty), CreateIndex, ModifyIndex}`, or 404 with an empty body; always with
//!   `X-Consul-Index`: the key's `ModifyIndex`, or for a listing the highest `ModifyIndex` or
//!   tombstone under the prefix, falling back to the KV table's index, and at least 1.
//! - Blocking queries: `?index=<n>` waits until that index passes `n` or `?wait=` (Go duration,
//!   default 5 minutes, at most 10) elapses, then answers the current state. Unlike Consul no
//!   jitter is added to the wait.
//! - `PUT /v1/kv/<key>` (`?cas=`, `?flags=`) and `DELETE /v1/kv/<key>` (`?cas=`, `?recurse`)
//!   answering `true` or `false`; a check-and-set index of 0 creates only; deleting a missing
//!   key succeeds; deletes leave tombstones until [`ConsulDouble::reap_tombstones`], which (as
//!   Consul's tombstone reaping) can move a listing's index backwards.
//! - `PUT /v1/txn` with KV operations (`set`, `cas`, `get`, `delete`, `delete-cas`,
//!   `check-index`, `check-not-exists`) applied atomically at one index: 200 with `Results`, or
//!   409 with `Errors` and nothing applied.
//! - Values above 512 KiB are refused with 413; with a token set, a request without that
//!   `X-Consul-Token` gets 403; a `?dc=` other than `dc1` gets 500.
//!
//! HTTP/1.1 is served by a small hand-written loop over a tokio listener (keep-alive,
//! `Content-Length` bodies only), which is enough for `reqwest` and keeps fx-core free of an
//! HTTP server dependency.

// A test double: its failures are the tests' failures, and it serves only localhost.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Consul's default limit of a value (`kv_max_value_size`).
const MAX_VALUE: usize = 512 * 1024;
/// The largest request body the double reads.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// The double's only datacenter.
const DATACENTER: &str = "dc1";

/// A running double; stops when dropped.
pub struct ConsulDouble {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

struct Shared {
    store: Mutex<Store>,
    /// The store's index, for blocking queries.
    changed: watch::Sender<u64>,
    /// The ACL token every request must carry, if any.
    token: Option<String>,
    /// Blocking queries waiting for a change now.
    blocked: AtomicUsize,
    /// Set by `go_down`: requests read after it get no answer (their connection is closed),
    /// even on a connection whose task has not been cancelled yet.
    down: AtomicBool,
}

#[derive(Clone, Default)]
struct Store {
    /// The last index given out (Consul's Raft index).
    index: u64,
    /// The index of the last KV write.
    kv_index: u64,
    entries: BTreeMap<String, Entry>,
    /// Deleted keys and the index they were deleted at.
    tombstones: BTreeMap<String, u64>,
}

#[derive(Clone)]
struct Entry {
    value: Vec<u8>,
    flags: u64,
    create_index: u64,
    modify_index: u64,
}

impl ConsulDouble {
    /// Starts a double on a free port of 127.0.0.1, accepting any request.
    pub async fn start() -> std::io::Result<ConsulDouble> {
        Self::start_with(None).await
    }

    /// Starts a double that answers 403 to requests without `X-Consul-Token: <token>`.
    pub async fn start_with_token(token: &str) -> std::io::Result<ConsulDouble> {
        Self::start_with(Some(token.to_string())).await
    }

    async fn start_with(token: Option<String>) -> std::io::Result<ConsulDouble> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            // As in a fresh cluster, the first KV write comes after other Raft entries, so
            // its index is above the 1 that an empty store's reads report.
            store: Mutex::new(Store {
                index: 1,
                ..Store::default()
            }),
            changed: watch::channel(0).0,
            token,
            blocked: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        });
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        tracing::debug!(%addr, "consul double listening");
        Ok(ConsulDouble {
            addr,
            shared,
            server,
        })
    }

    /// Its base URL, e.g. `http://127.0.0.1:43117`.
    pub fn address(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The index of the last write.
    pub fn index(&self) -> u64 {
        self.shared.lock().index
    }

    /// Goes down as a stopped agent does: the listener closes and open connections (blocking
    /// queries among them) drop; the stored keys are kept for [`ConsulDouble::come_back`].
    pub fn go_down(&mut self) {
        // Aborting the server task takes effect at its next poll, possibly on another worker
        // thread: until then a kept-alive connection could still be served. The flag makes the
        // outage immediate for every request read from now on.
        self.shared.down.store(true, Ordering::SeqCst);
        self.server.abort();
    }

    /// Listens again on the same address, with the keys and indexes it had.
    pub async fn come_back(&mut self) -> std::io::Result<()> {
        self.server.abort();
        let listener = TcpListener::bind(self.addr).await?;
        self.shared.down.store(false, Ordering::SeqCst);
        self.server = tokio::spawn(accept_loop(listener, Arc::clone(&self.shared)));
        Ok(())
    }

    /// How many blocking queries are waiting for a change now: a test that needs a watch to
    /// be in place before it writes waits for this instead of sleeping.
    pub fn blocking_queries(&self) -> usize {
        self.shared.blocked.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` blocking queries are waiting, or `within` passes; whether
    /// they are.
    pub async fn until_blocking(&self, count: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.blocking_queries() < count {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Forgets every tombstone, as Consul's reaping does; a listing's index may go backwards.
    pub fn reap_tombstones(&self) {
        self.shared.lock().tombstones.clear();
    }
}

impl Drop for ConsulDouble {
    fn drop(&mut self) {
        // Aborting the accept loop drops its connections' tasks with it.
        self.server.abort();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                Err(e) => tracing::debug!(error = %e, "consul double: accept failed"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    token: Option<String>,
    body: Vec<u8>,
    close: bool,
}

struct Response {
    status: u16,
    index: Option<u64>,
    body: Vec<u8>,
}

impl Response {
    fn json(status: u16, value: &Value) -> Response {
        Response {
            status,
            index: None,
            body: value.to_string().into_bytes(),
        }
    }
    fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            index: None,
            body: text.as_bytes().to_vec(),
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let request = match read_request(&mut reader).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(response) => {
                let _ = write_response(&mut write, &response, true).await;
                return;
            }
        };
        if shared.down.load(Ordering::SeqCst) {
            return;
        }
        let close = request.close;
        let response = handle(&shared, request).await;
        // A blocking query that was waiting when the double went down gets no answer either.
        if shared.down.load(Ordering::SeqCst) {
            return;
        }
        if write_response(&mut write, &response, close).await.is_err() || close {
            return;
        }
    }
}

/// The next request, `None` at the end of the connection, or the error to answer.
async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Request>, Response> {
    let bad = |what: &str| Response::text(400, what);
    let mut line = String::new();
    match reader.read_line(&mut line).await {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(_) => return Ok(None),
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(bad("malformed request line"));
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut length = 0usize;
    let mut token = None;
    let mut close = false;
    let mut header_bytes = 0usize;
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => header_bytes += n,
        }
        if header_bytes > 64 * 1024 {
            return Err(Response::text(431, "headers too large"));
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(bad("malformed header"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value.parse().map_err(|_| bad("bad content-length"))?;
            }
            "transfer-encoding" => {
                return Err(bad("the consul double reads content-length bodies only"))
            }
            "x-consul-token" => token = Some(value.to_string()),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    if length > MAX_BODY {
        return Err(Response::text(413, "request body too large"));
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).await.is_err() {
        return Ok(None);
    }
    let url = url::Url::parse(&format!("http://double{target}"))
        .map_err(|_| bad("malformed request target"))?;
    Ok(Some(Request {
        method,
        path: percent_decode(url.path()),
        query: url.query_pairs().into_owned().collect(),
        token,
        body,
        close,
    }))
}

async fn write_response(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    response: &Response,
    close: bool,
) -> std::io::Result<()> {
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Consul-Default-Acl-Policy: allow\r\n",
        response.status,
        response.body.len()
    );
    if let Some(index) = response.index {
        head.push_str(&format!(
            "X-Consul-Index: {index}\r\nX-Consul-Knownleader: true\r\nX-Consul-Lastcontact: 0\r\n"
        ));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    write.write_all(head.as_bytes()).await?;
    write.write_all(&response.body).await?;
    write.flush().await
}

fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(shared: &Shared, request: Request) -> Response {
    if let Some(token) = &shared.token {
        if request.token.as_deref() != Some(token.as_str()) {
            return Response::text(403, "Permission denied");
        }
    }
    if let Some(dc) = request.query.get("dc") {
        if dc != DATACENTER {
            return Response::text(500, "No path to datacenter");
        }
    }
    if request.path == "/v1/txn" {
        return match request.method.as_str() {
            "PUT" => txn(shared, &request.body),
            _ => Response::text(405, "method not allowed"),
        };
    }
    let Some(key) = request.path.strip_prefix("/v1/kv/") else {
        return Response::text(404, "the consul double serves /v1/kv/ and /v1/txn only");
    };
    let key = key.to_string();
    match request.method.as_str() {
        "GET" => kv_get(shared, &key, &request.query).await,
        "PUT" => kv_put(shared, &key, &request.query, request.body),
        "DELETE" => kv_delete(shared, &key, &request.query),
        _ => Response::text(405, "method not allowed"),
    }
}

fn query_u64(query: &BTreeMap<String, String>, name: &str) -> Result<Option<u64>, Response> {
    match query.get(name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| Response::text(400, &format!("invalid {name} value {v:?}"))),
    }
}

/// A Go duration such as `10s`, `5m`, `250ms` or `1m30s`.
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds).ok()?;
    }
    Some(total)
}

async fn kv_get(shared: &Shared, key: &str, query: &BTreeMap<String, String>) -> Response {
    let recurse = query.contains_key("recurse");
    let min_index = match query_u64(query, "index") {
        Ok(index) => index.unwrap_or(0),
        Err(response) => return response,
    };
    let wait = match query.get("wait") {
        None => Duration::from_secs(300),
        Some(text) => match parse_go_duration(text) {
            Some(wait) => wait.min(Duration::from_secs(600)),
            None => return Response::text(400, &format!("invalid wait {text:?}")),
        },
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut changed = shared.changed.subscribe();
    loop {
        let (index, entries) = shared.lock().read(key, recurse);
        let timed_out = tokio::time::Instant::now() >= deadline;
        if min_index == 0 || index > min_index || timed_out {
            let mut response = if entries.is_empty() {
                Response::text(404, "")
            } else {
                Response::json(200, &Value::Array(entries))
            };
            response.index = Some(index);
            return response;
        }
        // Either a change or the deadline ends the wait; both answer on the next round.
        let _waiting = Blocked::enter(&shared.blocked);
        let _ = tokio::time::timeout_at(deadline, changed.changed()).await;
    }
}

/// Counts a blocking query while it waits (also when its connection drops mid-wait).
struct Blocked<'a>(&'a AtomicUsize);

impl<'a> Blocked<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Blocked(counter)
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn kv_put(shared: &Shared, key: &str, query: &BTreeMap<String, String>, body: Vec<u8>) -> Response {
    if key.is_empty() {
        return Response::text(400, "Missing key name");
    }
    if query.contains_key("acquire") || query.contains_key("release") {
        return Response::text(400, "the consul double has no sessions (acquire, release)");
    }
    if body.len() > MAX_VALUE {
        return Response::text(
            413,
            &format!(
                "Request body({} bytes) too large, max size: {MAX_VALUE} bytes",
                body.len()
            ),
        );
    }
    let (cas, flags) = match (query_u64(query, "cas"), query_u64(query, "flags")) {
        (Ok(cas), Ok(flags)) => (cas, flags.unwrap_or(0)),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    let done: Result<bool, ()> =
        shared.write(|store, index| Ok(store.set(key, body, flags, cas, index)));
    Response::json(200, &json!(done.unwrap_or(false)))
}

fn kv_delete(shared: &Shared, key: &str, query: &BTreeMap<String, String>) -> Response {
    let cas = match query_u64(query, "cas") {
        Ok(cas) => cas,
        Err(response) => return response,
    };
    let recurse = query.contains_key("recurse");
    let done: Result<bool, ()> = shared.write(|store, index| {
        if recurse {
            let keys: Vec<String> = store
                .entries
                .keys()
                .filter(|k| k.starts_with(key))
                .cloned()
                .collect();
            Ok(keys.iter().all(|k| store.delete(k, None, index)))
        } else {
            Ok(store.delete(key, cas, index))
        }
    });
    Response::json(200, &json!(done.unwrap_or(false)))
}

fn txn(shared: &Shared, body: &[u8]) -> Response {
    let ops: Vec<Value> = match serde_json::from_slice(body) {
        Ok(ops) => ops,
        Err(e) => return Response::text(400, &format!("Failed to parse body: {e}")),
    };
    let outcome = shared.write(|store, index| {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match store.txn_op(op, index) {
                Ok(Some(result)) => results.push(json!({ "KV": result })),
                Ok(None) => {}
                Err(what) => errors.push(json!({ "OpIndex": i, "What": what })),
            }
        }
        if errors.is_empty() {
            Ok(results)
        } else {
            Err(errors)
        }
    });
    match outcome {
        Ok(results) => Response::json(200, &json!({ "Results": results, "Errors": null })),
        Err(errors) => Response::json(409, &json!({ "Results": null, "Errors": errors })),
    }
}

impl Shared {
    /// Applies `change` to a copy of the store at the next index; keeps the copy (and
    /// notifies blocking queries) only if it succeeded and wrote something.
    fn write<T, E>(&self, change: impl FnOnce(&mut Store, u64) -> Result<T, E>) -> Result<T, E> {
        let mut store = self.lock();
        let mut next = store.clone();
        let index = store.index + 1;
        let out = change(&mut next, index)?;
        if next.kv_index == index {
            next.index = index;
            *store = next;
            self.changed.send_replace(index);
        }
        Ok(out)
    }
}

impl Store {
    /// The index and entries of a read of `key` (or of the prefix `key` with `recurse`).
    fn read(&self, key: &str, recurse: bool) -> (u64, Vec<Value>) {
        let entries: Vec<(&String, &Entry)> = if recurse {
            self.entries
                .range(key.to_string()..)
                .take_while(|(k, _)| k.starts_with(key))
                .collect()
        } else {
            self.entries.get_key_value(key).into_iter().collect()
        };
        let index = if recurse {
            let live = entries.iter().map(|(_, e)| e.modify_index).max();
            let dead = self
                .tombstones
                .iter()
                .filter(|(k, _)| k.starts_with(key))
                .map(|(_, i)| *i)
                .max();
            match live.max(dead) {
                Some(index) if index > 0 => index,
                _ => self.kv_index,
            }
        } else {
            entries
                .first()
                .map(|(_, e)| e.modify_index)
                .unwrap_or(self.kv_index)
        };
        let entries = entries
            .into_iter()
            .map(|(k, e)| render(k, e, true))
            .collect();
        (index.max(1), entries)
    }

    /// Sets `key`, with `cas` only if its index is that (0: only if absent); whether it did.
    fn set(&mut self, key: &str, value: Vec<u8>, flags: u64, cas: Option<u64>, index: u64) -> bool {
        let existing = self.entries.get(key);
        match (cas, existing) {
            (Some(0), Some(_)) | (Some(1..), None) => return false,
            (Some(cas), Some(e)) if cas != 0 && e.modify_index != cas => return false,
            _ => {}
        }
        let create_index = existing.map_or(index, |e| e.create_index);
        self.entries.insert(
            key.to_string(),
            Entry {
                value,
                flags,
                create_index,
                modify_index: index,
            },
        );
        self.kv_index = index;
        true
    }

    /// Deletes `key`, with `cas` only if its index is that; a missing key is deleted.
    fn delete(&mut self, key: &str, cas: Option<u64>, index: u64) -> bool {
        let Some(existing) = self.entries.get(key) else {
            return true;
        };
        if cas.is_some_and(|cas| cas != existing.modify_index) {
            return false;
        }
        self.entries.remove(key);
        self.tombstones.insert(key.to_string(), index);
        self.kv_index = index;
        true
    }

    /// One KV operation of a transaction: its result entry, if it has one, or the error.
    fn txn_op(&mut self, op: &Value, index: u64) -> Result<Option<Value>, String> {
        let kv = op
            .get("KV")
            .ok_or("only KV operations are supported by the double")?;
        let verb = kv.get("Verb").and_then(Value::as_str).unwrap_or_default();
        let key = kv.get("Key").and_then(Value::as_str).unwrap_or_default();
        let cas = kv.get("Index").and_then(Value::as_u64).unwrap_or(0);
        let flags = kv.get("Flags").and_then(Value::as_u64).unwrap_or(0);
        if key.is_empty() {
            return Err("missing key name".into());
        }
        let value = match kv.get("Value").and_then(Value::as_str) {
            None => Vec::new(),
            Some(text) => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("value of key {key:?} is not base64: {e}"))?,
        };
        if value.len() > MAX_VALUE {
            return Err(format!(
                "value of key {key:?} is larger than {MAX_VALUE} bytes"
            ));
        }
        let written = |store: &Store| store.entries.get(key).map(|e| render(key, e, false));
        match verb {
            "set" => {
                self.set(key, value, flags, None, index);
                Ok(written(self))
            }
            "cas" => {
                if !self.set(key, value, flags, Some(cas), index) {
                    return Err(format!("failed to set key {key:?}, index is stale"));
                }
                Ok(written(self))
            }
            "get" => match self.entries.get(key) {
                Some(e) => Ok(Some(render(key, e, true))),
                None => Err(format!("key {key:?} doesn't exist")),
            },
            "delete" => {
                self.delete(key, None, index);
                Ok(None)
            }
            "delete-cas" => {
                if !self.delete(key, Some(cas), index) {
                    return Err(format!("failed to delete key {key:?}, index is stale"));
                }
                Ok(None)
            }
            "check-index" => match self.entries.get(key) {
                Some(e) if e.modify_index == cas => Ok(Some(render(key, e, false))),
                Some(e) => Err(format!("current modify index {} != {cas}", e.modify_index)),
                None => Err(format!("key {key:?} doesn't exist")),
            },
            "check-not-exists" => match self.entries.get(key) {
                Some(_) => Err(format!("key {key:?} exists")),
                None => Ok(None),
            },
            other => Err(format!("verb {other:?} is not supported by the double")),
        }
    }
}

/// An entry as Consul encodes it; transactions' write results carry no value.
fn render(key: &str, entry: &Entry, with_value: bool) -> Value {
    let value = (with_value && !entry.value.is_empty())
        .then(|| base64::engine::general_purpose::STANDARD.encode(&entry.value));
    json!({
        "LockIndex": 0,
        "Key": key,
        "Flags": entry.flags,
        "Value": value,
        "CreateIndex": entry.create_index,
        "ModifyIndex": entry.modify_index,
    })
}
