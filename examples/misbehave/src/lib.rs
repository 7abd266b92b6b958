//! `misbehave`: breaks the executor's limits on purpose, for tests and benchmarks.
//!
//! The event `type` chooses the behaviour:
//!
//! | type | behaviour |
//! | --- | --- |
//! | `fx.test.ok` | echoes the event back: type `fx.test.echoed`, id `<id>-echo`, same data and other attributes |
//! | `fx.test.trap` | panics, which aborts: the instance traps (`unreachable`) |
//! | `fx.test.loop` | loops forever (wall-clock timeout, fuel) |
//! | `fx.test.membomb` | allocates and touches 1 MiB chunks forever (memory limit) |
//! | `fx.test.recurse` | recurses without bound (stack overflow) |
//! | `fx.test.output-flood` | returns 1,000 events of 64 KiB of data each (output limit) |
//! | `fx.test.log-flood` | logs 1,000,000 lines of 200 bytes (log limit) |
//! | `fx.test.error` | fails with `requested failure` |
//! | `fx.test.count` | returns one event (`fx.test.counted`, id `<id>-count`) whose JSON data `{"count": n}` counts the calls this instance has handled: 1 in a fresh instance, more in a reused one |
//! | `fx.test.grants` | returns one event (`fx.test.granted`, id `<id>-grants`) whose data is `config=<k>=<v>;…` then, per name in the input's data (a comma-separated list), a line `secret <name>: ok <value>` or `secret <name>: error <message>` |
//! | `fx.test.http-get` | sends `GET` to the URL in the input's data (text) through `wasi:http`; returns one event (`fx.test.fetched`, id `<id>-http`) whose data is `status <code>: <body>` or `error <reason>` |
//! | `fx.test.http-upload` | sends `POST` with 64 MiB of zeros to the URL in the input's data, written with `blocking-write-and-flush` 4 KiB at a time (a `wasi:io/streams` wait: against a server that never reads, the timeout must still hold); returns one event (`fx.test.fetched`, id `<id>-http`) as `fx.test.http-get` does |
//! | `fx.test.sleep` | sleeps an hour in `std::thread::sleep` (a blocking WASI clock wait: the timeout must still hold) |
//! | `fx.test.poll-forever` | blocks on a `wasi:io/poll` pollable that never fires (a clock subscription at the end of time) |
//! | `fx.test.echo-size` | returns one event (`fx.test.echoed`, id `<id>-echo`) with the input's data only, for size benchmarks |
//!
//! Any other type fails with a message naming it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::hint::black_box;

use ferrisfx_guest::{config, log, Error, Event};

/// The source of the events this function produces.
const SOURCE: &str = "/functions/misbehave";

/// Calls this instance has handled (`fx.test.count`): state that survives in a reused instance.
static CALLS: AtomicU64 = AtomicU64::new(0);

/// The type of echoed events.
const ECHOED: &str = "fx.test.echoed";

fn handle(event: Event) -> Result<Vec<Event>, Error> {
    match event.ty() {
        "fx.test.ok" => {
            let id = format!("{}-echo", event.id());
            Ok(vec![event.with_id(id).with_type(ECHOED)])
        }
        "fx.test.trap" => trap(),
        "fx.test.loop" => spin(),
        "fx.test.membomb" => membomb(),
        "fx.test.recurse" => {
            let depth = recurse(black_box(0));
            Err(Error::new(format!("recursion stopped at depth {depth}")))
        }
        "fx.test.output-flood" => Ok(output_flood(event.id())),
        "fx.test.log-flood" => {
            log_flood();
            Ok(Vec::new())
        }
        "fx.test.error" => Err(Error::new("requested failure")),
        "fx.test.count" => {
            let count = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
            let out = Event::new(format!("{}-count", event.id()), SOURCE, "fx.test.counted")
                .with_data("application/json", format!("{{\"count\":{count}}}").into_bytes());
            Ok(vec![out])
        }
        "fx.test.grants" => {
            let mut text = String::from("config=");
            for (key, value) in config::all() {
                let _ = write!(text, "{key}={value};");
            }
            let names = event.data_text().unwrap_or_default();
            for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                match config::secret(name) {
                    Ok(value) => write!(text, "\nsecret {name}: ok {value}"),
                    Err(e) => write!(text, "\nsecret {name}: error {e}"),
                }
                .map_err(|e| Error::new(e.to_string()))?;
            }
            let out = Event::new(format!("{}-grants", event.id()), SOURCE, "fx.test.granted")
                .with_data("text/plain", text.into_bytes());
            Ok(vec![out])
        }
        "fx.test.http-get" => {
            let url = event.data_text().unwrap_or_default().trim().to_owned();
            let text = match http_get(&url) {
                Ok((status, body)) => format!("status {status}: {body}"),
                Err(reason) => format!("error {reason}"),
            };
            let out = Event::new(format!("{}-http", event.id()), SOURCE, "fx.test.fetched")
                .with_data("text/plain", text.into_bytes());
            Ok(vec![out])
        }
        "fx.test.http-upload" => {
            let url = event.data_text().unwrap_or_default().trim().to_owned();
            let text = match http_upload(&url, 64 << 20) {
                Ok(status) => format!("status {status}"),
                Err(reason) => format!("error {reason}"),
            };
            let out = Event::new(format!("{}-http", event.id()), SOURCE, "fx.test.fetched")
                .with_data("text/plain", text.into_bytes());
            Ok(vec![out])
        }
        "fx.test.sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Err(Error::new("woke up after an hour"))
        }
        "fx.test.poll-forever" => {
            let never = wasi::clocks::monotonic_clock::subscribe_duration(u64::MAX);
            wasi::io::poll::poll(&[&never]);
            Err(Error::new("a pollable that never fires became ready"))
        }
        "fx.test.echo-size" => {
            let id = format!("{}-echo", event.id());
            let content_type = event
                .datacontenttype()
                .unwrap_or("application/octet-stream")
                .to_owned();
            let mut out = Event::new(id, SOURCE, ECHOED);
            if let Some(data) = event.into_data() {
                out = out.with_data(content_type, data);
            }
            Ok(vec![out])
        }
        other => Err(Error::new(format!("unknown test event type {other:?}"))),
    }
}

/// Panics; with `panic = "abort"` the instance traps.
#[allow(clippy::panic)]
fn trap() -> ! {
    panic!("requested trap")
}

/// Loops forever; `black_box` keeps the optimizer from removing the loop.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks and writes to every page of each, until the memory limit stops it.
fn membomb() -> ! {
    const CHUNK: usize = 1 << 20;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        for byte in chunk.iter_mut().step_by(4096) {
            *byte = 1;
        }
        chunks.push(black_box(chunk));
        black_box(&chunks);
    }
}

/// Recurses without bound, until the host's wasm stack limit traps (stack overflow).
///
/// The recursive result is rotated and combined with `depth` after the call, so the call is not
/// in tail position and the optimizer cannot turn it into a loop (not even an accumulator loop).
/// Frames keep nothing in memory, so the wasm call stack runs out before the shadow stack in
/// linear memory does.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return depth;
    }
    recurse(depth.wrapping_add(1)).rotate_left(1) ^ depth
}

/// 1,000 events with 64 KiB of data each.
fn output_flood(id: &str) -> Vec<Event> {
    (0..1_000)
        .map(|n| {
            Event::new(format!("{id}-flood-{n}"), SOURCE, "fx.test.flood")
                .with_data("application/octet-stream", vec![b'x'; 64 * 1024])
        })
        .collect()
}

/// Logs 1,000,000 lines of 200 bytes each.
fn log_flood() {
    const LINE_BYTES: usize = 200;
    let mut line = String::with_capacity(LINE_BYTES);
    for n in 0..1_000_000u32 {
        line.clear();
        let _ = write!(line, "log-flood line {n:07} ");
        while line.len() < LINE_BYTES {
            line.push('x');
        }
        log::info(&line);
    }
}

/// An outgoing request to `url` (its scheme, authority and path set), or why `url` is not one.
fn request_to(url: &str) -> Result<wasi::http::types::OutgoingRequest, String> {
    use wasi::http::types::{Fields, OutgoingRequest, Scheme};

    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} has no scheme"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let scheme = if scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request
        .set_scheme(Some(&scheme))
        .and_then(|()| request.set_authority(Some(authority)))
        .and_then(|()| request.set_path_with_query(Some(path)))
        .map_err(|()| format!("{url:?} is not a valid request"))?;
    Ok(request)
}

/// `POST url` with `len` zero bytes written 4 KiB at a time with `blocking-write-and-flush`:
/// the status, or why it failed.
fn http_upload(url: &str, len: usize) -> Result<u16, String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Method, OutgoingBody};

    let request = request_to(url)?;
    request
        .set_method(&Method::Post)
        .map_err(|()| "POST refused")?;
    let body = request.body().map_err(|()| "no request body")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    {
        let stream = body.write().map_err(|()| "no body stream")?;
        let chunk = [0u8; 4096];
        let mut sent = 0;
        while sent < len {
            stream
                .blocking_write_and_flush(&chunk)
                .map_err(|e| format!("writing the body after {sent} bytes: {e:?}"))?;
            sent += chunk.len();
        }
    }
    OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    Ok(response.status())
}

/// `GET url` through `wasi:http`: the status and the body as text, or why it failed.
fn http_get(url: &str) -> Result<(u16, String), String> {
    use wasi::http::outgoing_handler;

    let request = request_to(url)?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "no body")?;
    let stream = body.stream().map_err(|()| "no body stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend(chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(format!("reading the body: {e:?}")),
        }
    }
    drop(stream);
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

ferrisfx_guest::export_handler!(handle);
