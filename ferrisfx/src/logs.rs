//! `ferrisfx logs HANDLER [-f]`: a handler's function log lines (`GET
//! /api/v1/handlers/{name}/logs`), one per line, and with `--follow` the new ones as they
//! arrive, like `kubectl logs -f`.
//!
//! Following polls every second for the lines past the newest one printed. A line reaches the
//! log store when its execution's attempt finishes, stamped with when the function wrote it:
//! up to the handler's timeout earlier, so it can land behind lines already printed. Every
//! tenth poll therefore reads again from the newest time seen minus a lookback window
//! (`--lookback`, two minutes by default) and prints only the lines it has not printed, by
//! identity (execution, attempt, seq); such a late line shows within about ten seconds.
//! Identities older than the window are forgotten as it moves, so memory stays bounded by the
//! lines of one window. While the server cannot be reached, or fails, the
//! command says so on standard error and keeps polling; Ctrl-C ends it with status 0.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use fx_core::execution::{ExecutionId, LogLine};
use fx_core::sink::{LogCursor, MAX_LOG_LINES};
use management_server::routes::logs::LogPage;

use crate::client::Api;

/// How often `--follow` asks for new lines.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Every how many polls `--follow` reads the whole lookback window again (the others read
/// only past the newest line): a late line shows within about this many seconds, and a busy
/// handler's window is read a tenth as often as it is polled.
const RESCAN_EVERY: u32 = 10;

/// How long one request may take before following counts the server as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `ferrisfx logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The handler whose function's log lines to print.
    pub handler: String,
    /// Only lines written since then: a duration back from now (`30s`, `10m`, `2h`, `1d`,
    /// `1h30m`) or a time (RFC 3339, `2026-12-04T12:00:00Z`).
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,
    /// Keep printing new lines as they arrive, until Ctrl-C.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Stop after printing this many lines.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// How to print: `text`, one line per log line (time, level, execution, message, fields),
    /// or `json`, one JSON object per line.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = LogFormat::Text)]
    pub output: LogFormat,
    /// With --follow, how far before the newest line each poll looks again for lines that
    /// arrived late (a line is stored when its execution finishes): at least the handler's
    /// timeout.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub lookback: Duration,
}

/// How `ferrisfx logs` prints a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-04T12:00:01.123Z INFO  1a2b3c4d message key=value`.
    Text,
    /// The API's JSON object of the line, one per line (NDJSON).
    Json,
}

/// Runs `ferrisfx logs` until it has printed everything (or `--limit` lines), or, with
/// `--follow`, until Ctrl-C.
pub async fn run(api: &Api, args: LogsArgs) -> anyhow::Result<()> {
    let since = args
        .since
        .as_deref()
        .map(|text| parse_since(text, Utc::now()))
        .transpose()?;
    let lookback = chrono::Duration::from_std(args.lookback).context("--lookback is too long")?;
    let mut printer = Printer {
        format: args.output,
        left: args.limit,
        out: std::io::stdout(),
    };
    let reading = read(
        api,
        &args.handler,
        since,
        args.follow,
        lookback,
        &mut printer,
    );
    tokio::select! {
        result = reading => result,
        // Ctrl-C is how following ends: not a failure.
        Ok(()) = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Prints the stored lines from `since`, then, when `follow`, the new ones forever.
async fn read(
    api: &Api,
    handler: &str,
    since: Option<DateTime<Utc>>,
    follow: bool,
    lookback: chrono::Duration,
    printer: &mut Printer,
) -> anyhow::Result<()> {
    let mut seen = Seen::default();
    // What is stored now: an error here (no such handler, not allowed, no server) ends the
    // command.
    if !poll(api, handler, since, None, &mut seen, printer).await? || !follow {
        return Ok(());
    }
    let mut trouble: Option<String> = None;
    let mut polls: u32 = 0;
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        polls = polls.wrapping_add(1);
        // Most polls read only what comes after the newest line printed, which costs the
        // server nothing when nothing is new; every RESCAN_EVERY-th reads the whole lookback
        // window again for lines that arrived late (stamped before the newest one).
        let (from, after) = if polls.is_multiple_of(RESCAN_EVERY) {
            (
                since.max(seen.newest().map(|newest| newest - lookback)),
                None,
            )
        } else {
            (since, seen.newest_cursor())
        };
        match poll(api, handler, from, after, &mut seen, printer).await {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) if is_transient(&e) => {
                let said = format!("{e:#}");
                if trouble.as_ref() != Some(&said) {
                    eprintln!("ferrisfx logs: {said}; retrying every second");
                }
                trouble = Some(said);
                continue;
            }
            Err(e) => return Err(e),
        }
        if trouble.take().is_some() {
            eprintln!("ferrisfx logs: reading again");
        }
        if let Some(newest) = seen.newest() {
            seen.forget_before(newest - lookback);
        }
    }
}

/// Reads every line from `from` page by page and prints those not printed yet; answers
/// whether to go on (false once `--limit` lines are printed or standard output is closed).
async fn poll(
    api: &Api,
    handler: &str,
    from: Option<DateTime<Utc>>,
    mut after: Option<String>,
    seen: &mut Seen,
    printer: &mut Printer,
) -> anyhow::Result<bool> {
    loop {
        let page = fetch(api, handler, from, after.as_deref()).await?;
        for line in &page.lines {
            if seen.insert(line) && !printer.print(line)? {
                return Ok(false);
            }
        }
        match page.next {
            Some(next) if !page.lines.is_empty() => after = Some(next),
            _ => return Ok(true),
        }
    }
}

/// One page of `handler`'s lines from `from`, after cursor `after`.
async fn fetch(
    api: &Api,
    handler: &str,
    from: Option<DateTime<Utc>>,
    after: Option<&str>,
) -> anyhow::Result<LogPage> {
    let mut url = api.entry_url("/handlers", handler)?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("the server's URL cannot take a path"))?
        .push("logs");
    let mut query = vec![("limit", MAX_LOG_LINES.to_string())];
    if let Some(from) = from {
        query.push(("since", from.to_rfc3339_opts(SecondsFormat::Micros, true)));
    }
    if let Some(after) = after {
        query.push(("after", after.to_string()));
    }
    let request = api.http().get(url).query(&query).timeout(REQUEST_TIMEOUT);
    let body = api.send(request).await?;
    serde_json::from_value(body)
        .with_context(|| format!("reading the log lines of handler {handler} from the server"))
}

/// Whether following goes on after `error`: the server could not be reached or answered
/// with a server error (it restarts, its log store is down); not when it refused the request.
fn is_transient(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<reqwest::Error>().is_some()
            || cause
                .downcast_ref::<crate::exit::Failure>()
                .and_then(crate::exit::Failure::status)
                .is_some_and(|status| status.is_server_error())
    })
}

/// The identities of the lines printed whose time is in the window, to print each line once.
#[derive(Debug, Default)]
struct Seen {
    /// By position, to forget the oldest.
    by_time: BTreeSet<LogCursor>,
    /// By identity.
    ids: HashSet<(ExecutionId, u32, u32)>,
    /// The newest time seen (kept when its line is forgotten).
    newest: Option<DateTime<Utc>>,
    /// The position of the newest line seen, as the API's `after` cursor.
    newest_cursor: Option<LogCursor>,
}

impl Seen {
    /// Records `line`; false when it was recorded before.
    fn insert(&mut self, line: &LogLine) -> bool {
        let id = (line.execution_id.clone(), line.attempt, line.seq);
        if !self.ids.insert(id) {
            return false;
        }
        let cursor = LogCursor::of(line);
        self.newest = self.newest.max(Some(cursor.at));
        if self
            .newest_cursor
            .as_ref()
            .is_none_or(|newest| cursor > *newest)
        {
            self.newest_cursor = Some(cursor.clone());
        }
        self.by_time.insert(cursor);
        true
    }

    fn newest(&self) -> Option<DateTime<Utc>> {
        self.newest
    }

    /// The `after` cursor of the newest line seen.
    fn newest_cursor(&self) -> Option<String> {
        self.newest_cursor.as_ref().map(ToString::to_string)
    }

    /// Forgets the lines written before `horizon` (no poll reads them again).
    fn forget_before(&mut self, horizon: DateTime<Utc>) {
        while let Some(first) = self.by_time.first() {
            if first.at >= horizon {
                break;
            }
            if let Some(first) = self.by_time.pop_first() {
                self.ids
                    .remove(&(first.execution_id, first.attempt, first.seq));
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Prints lines to standard output, up to `--limit`.
struct Printer {
    format: LogFormat,
    /// Lines still to print, if limited.
    left: Option<u64>,
    out: std::io::Stdout,
}

impl Printer {
    /// Prints `line`; answers whether to go on (false once the limit is reached or standard
    /// output is closed, as by `| head`).
    fn print(&mut self, line: &LogLine) -> anyhow::Result<bool> {
        if self.left == Some(0) {
            return Ok(false);
        }
        let text = match self.format {
            LogFormat::Text => text(line),
            LogFormat::Json => serde_json::to_string(line).context("encoding a log line")?,
        };
        match writeln!(self.out.lock(), "{text}") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(false),
            Err(e) => return Err(e).context("writing to standard output"),
        }
        if let Some(left) = &mut self.left {
            *left -= 1;
            return Ok(*left > 0);
        }
        Ok(true)
    }
}

/// `2026-12-04T12:00:01.123Z INFO  1a2b3c4d message key=value`: one line, whatever the
/// message holds.
fn text(line: &LogLine) -> String {
    let mut text = format!(
        "{} {:<5} {} {}",
        line.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        line.level.as_str().to_uppercase(),
        line.execution_id.as_str().get(..8).unwrap_or_default(),
        one_line(&line.message)
    );
    for (key, value) in &line.fields {
        let _ = write!(text, " {}={}", one_line(key), field_value(value));
    }
    text
}

/// `text` with line breaks written as `\n` and `\r`.
fn one_line(text: &str) -> String {
    text.replace('\n', "\\n").replace('\r', "\\r")
}

/// A field's value as is, or quoted (Rust escapes) when it is empty or holds spaces, quotes,
/// `=` or control characters.
fn field_value(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
    if plain {
        value.to_string()
    } else {
        format!("{value:?}")
    }
}

/// `--since`: a duration back from `now` (`30s`, `10m`, `2h`, `1d`, `1h30m`) or an RFC 3339
/// time.
fn parse_since(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    match parse_duration(text)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
    {
        Some(back) => Ok(now - back),
        None => bail!(
            "--since {text:?} is neither a duration (30s, 10m, 2h, 1d) nor an RFC 3339 time (2026-12-04T12:00:00Z)"
        ),
    }
}

/// A duration of whole units: `500ms`, `30s`, `10m`, `2h`, `1d`, or several (`1h30m`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("{text:?} is not a duration: a number and a unit (ms, s, m, h, d), e.g. 30s, 10m, 1h30m")
    };
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, tail) = rest.split_at(digits);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ms" => {
                total += Duration::from_millis(number);
                rest = tail;
                continue;
            }
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        total += Duration::from_secs(number.checked_mul(seconds).ok_or_else(bad)?);
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fx_core::execution::LogLevel;

    fn line(micros: i64, execution: &str, seq: u32) -> LogLine {
        LogLine {
            execution_id: ExecutionId::derive("/s", execution, "h"),
            handler: "h".into(),
            attempt: 1,
            seq,
            at: DateTime::from_timestamp_micros(micros).unwrap(),
            level: LogLevel::Info,
            message: "hello\nthere".into(),
            fields: [
                ("event_id".to_string(), "e-1".to_string()),
                ("note".to_string(), "two words".to_string()),
            ]
            .into(),
        }
    }

    #[test]
    fn a_line_prints_as_one_text_line_with_its_fields() {
        let l = line(1_796_385_601_123_456, "e", 0);
        let short = &l.execution_id.as_str()[..8];
        assert_eq!(
            text(&l),
            format!("2026-12-04T12:00:01.123Z INFO  {short} hello\\nthere event_id=e-1 note=\"two words\"")
        );
    }

    #[test]
    fn each_line_is_seen_once_and_old_ones_are_forgotten_as_the_window_moves() {
        let mut seen = Seen::default();
        assert!(seen.insert(&line(10, "a", 0)));
        assert!(seen.insert(&line(20, "a", 1)));
        assert!(!seen.insert(&line(10, "a", 0)), "printed already");
        assert!(seen.insert(&line(15, "b", 0)));
        assert_eq!(seen.newest(), DateTime::from_timestamp_micros(20));
        seen.forget_before(DateTime::from_timestamp_micros(15).unwrap());
        assert_eq!(seen.len(), 2, "the line at 10 is forgotten");
        assert!(!seen.insert(&line(15, "b", 0)));
        seen.forget_before(DateTime::from_timestamp_micros(100).unwrap());
        assert_eq!(seen.len(), 0);
        assert_eq!(
            seen.newest(),
            DateTime::from_timestamp_micros(20),
            "the newest time stays"
        );
    }

    #[test]
    fn since_takes_a_duration_back_from_now_or_a_time() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |text: &str| parse_since(text, now).unwrap().to_rfc3339();
        assert_eq!(at("10m"), "2026-12-04T11:50:00+00:00");
        assert_eq!(at("1h30m"), "2026-12-04T10:30:00+00:00");
        assert_eq!(at("1d"), "2026-12-03T12:00:00+00:00");
        assert_eq!(at("2026-12-01T00:00:00+01:00"), "2026-11-30T23:00:00+00:00");
        for bad in ["", "10", "m", "10x", "yesterday", "10m5"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    }

    #[test]
    fn only_unreachable_servers_and_server_errors_are_waited_out() {
        let refused = anyhow::Error::new(crate::exit::Failure::Api {
            status: reqwest::StatusCode::NOT_FOUND,
            message: "handler \"x\" does not exist".into(),
        });
        assert!(!is_transient(&refused));
        let failed = anyhow::Error::new(crate::exit::Failure::Api {
            status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
            message: "elasticsearch is down".into(),
        });
        assert!(is_transient(&failed));
        assert!(!is_transient(&anyhow::anyhow!("something else")));
    }
}
