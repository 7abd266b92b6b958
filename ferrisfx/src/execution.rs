//! `ferrisfx executions list|show`: executions as a table (id, status, handler, event type,
//! created, duration), and one execution as a page: its status, handler and package, event,
//! attempts, timings, output, error and log lines. `-o json|yaml` prints the API's document
//! (`GET /api/v1/executions`, `GET /api/v1/executions/{id}`).

use std::fmt::Write as _;

use serde_json::Value;

use crate::client::Api;
use crate::output::{self, cell, duration_us, time, Format, ListArgs, Table, View};

/// Lines of output shown before the page says how to see the rest.
const OUTPUT_LINES: usize = 40;

/// `executions list`.
pub async fn list(
    api: &Api,
    handler: Option<String>,
    status: Option<String>,
    limit: u32,
    args: &ListArgs,
) -> anyhow::Result<()> {
    let mut query = vec![("limit", limit.to_string())];
    query.extend(handler.map(|h| ("handler", h)));
    query.extend(status.map(|s| ("status", s)));
    output::list(
        args,
        "ferrisfx executions list",
        || api.send(api.http().get(api.url("/executions")).query(&query)),
        &table,
        &mut std::io::stdout().lock(),
    )
    .await
}

/// `executions show`: the page by default.
pub async fn show(api: &Api, id: &str, format: Option<Format>) -> anyhow::Result<()> {
    output::show(
        format.unwrap_or(Format::Table),
        api.send(api.http().get(api.entry_url("/executions", id)?)),
        &|v| View::text(page(v)),
        &mut std::io::stdout().lock(),
    )
    .await
}

/// The executions of `GET /api/v1/executions` (`{"items": [...], "next_cursor"}`) as a table.
pub fn table(v: &Value) -> View {
    let mut table = Table::new(&[
        "id",
        "status",
        "handler",
        "event type",
        "created",
        "duration",
    ]);
    for e in v["items"].as_array().into_iter().flatten() {
        table.push(vec![
            cell(&e["id"]),
            cell(&e["status"]),
            cell(&e["handler"]),
            cell(&e["event_type"]),
            time(&e["created_at"]),
            e["duration_us"]
                .as_u64()
                .map_or_else(|| "-".to_string(), duration_us),
        ]);
    }
    View::table(&table, "executions")
}

/// A time to the millisecond, UTC: `12:00:01.123`; `-` when absent.
fn clock(value: &Value) -> String {
    value
        .as_str()
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        .map_or_else(
            || cell(value),
            |at| {
                at.with_timezone(&chrono::Utc)
                    .format("%H:%M:%S%.3f")
                    .to_string()
            },
        )
}

/// The time from `from` to `to` (RFC 3339), for people; `None` if either is absent.
fn between(from: &Value, to: &Value) -> Option<String> {
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str()?).ok();
    let us = (at(to)? - at(from)?).num_microseconds()?;
    Some(duration_us(u64::try_from(us).unwrap_or(0)))
}

/// A failure (`{"kind", "message"}`) in one line: `trap: unreachable executed`.
fn failure(v: &Value) -> String {
    format!("{}: {}", cell(&v["kind"]), cell(&v["message"]))
}

/// One execution (`{"execution", "logs"}`) as a page for people.
pub fn page(v: &Value) -> String {
    let e = &v["execution"];
    let id = cell(&e["id"]);
    let mut out = String::new();
    let mut field = |label: &str, value: String| {
        let _ = writeln!(out, "{:<10}{value}", format!("{label}:"));
    };
    field("ID", id.clone());
    let attempts = e["attempts"].as_u64().unwrap_or_default();
    field(
        "Status",
        format!(
            "{} ({attempts} attempt{})",
            cell(&e["status"]),
            if attempts == 1 { "" } else { "s" }
        ),
    );
    field("Handler", cell(&e["handler"]));
    let package = &e["package"];
    field(
        "Package",
        if package.is_object() {
            format!(
                "{}@{} (sha256 {})",
                cell(&package["name"]),
                cell(&package["version"]),
                cell(&package["digest"])
            )
        } else {
            "- (not resolved yet)".into()
        },
    );
    let event = &e["event"];
    let mut about = format!(
        "{}  source {}  id {}",
        cell(&event["type"]),
        cell(&event["source"]),
        cell(&event["id"])
    );
    if let Some(subject) = event["subject"].as_str() {
        about.push_str(&format!("  subject {subject}"));
    }
    field("Event", about);
    let mut timings = format!("queued {}", clock(&e["created_at"]));
    if e["started_at"].is_string() {
        timings.push_str(&format!(" → started {}", clock(&e["started_at"])));
        if let Some(wait) = between(&e["created_at"], &e["started_at"]) {
            timings.push_str(&format!(" (+{wait})"));
        }
    }
    if e["finished_at"].is_string() {
        timings.push_str(&format!(" → finished {}", clock(&e["finished_at"])));
    }
    if let Some(us) = e["duration_us"].as_u64() {
        timings.push_str(&format!(", ran {}", duration_us(us)));
    }
    field(
        "Created",
        format!("{} UTC", time(&e["created_at"]).trim_end_matches('Z')),
    );
    field("Timings", timings);
    if e["error"].is_object() {
        field("Error", failure(&e["error"]));
    }

    let history = e["attempt_history"].as_array().cloned().unwrap_or_default();
    if !history.is_empty() {
        out.push_str("\nAttempts:\n");
        let mut table = Table::new(&["#", "status", "finished", "duration", "executor", "note"]);
        for a in &history {
            let measured = &a["measurements"];
            let mut note = Vec::new();
            if a["failure"].is_object() {
                note.push(failure(&a["failure"]));
            }
            if a["retry_at"].is_string() {
                note.push(format!("retry at {}", clock(&a["retry_at"])));
            }
            table.push(vec![
                cell(&a["attempt"]),
                cell(&a["status"]),
                clock(&a["finished_at"]),
                a["duration_us"]
                    .as_u64()
                    .map_or_else(|| "-".into(), duration_us),
                measured["executor"].as_str().unwrap_or("-").to_string(),
                note.join("; "),
            ]);
        }
        indent(&mut out, &table.render());
    }

    let events = e["output"].as_array().cloned().unwrap_or_default();
    if !events.is_empty() {
        let _ = writeln!(
            out,
            "\nOutput ({} event{}):",
            events.len(),
            if events.len() == 1 { "" } else { "s" }
        );
        let mut text = String::new();
        for event in &events {
            let _ = writeln!(text, "{} (id {})", cell(&event["type"]), cell(&event["id"]));
            let data = match (&event["data"], &event["data_base64"]) {
                (Value::String(s), _) => s.clone(),
                (Value::Null, Value::String(b64)) => format!("<{} bytes, base64>", b64.len()),
                (Value::Null, _) => "<no data>".into(),
                (data, _) => serde_json::to_string_pretty(data).unwrap_or_default(),
            };
            for line in data.lines() {
                let _ = writeln!(text, "  {line}");
            }
        }
        let lines: Vec<&str> = text.lines().collect();
        for line in lines.iter().take(OUTPUT_LINES) {
            let _ = writeln!(out, "  {line}");
        }
        if lines.len() > OUTPUT_LINES {
            let _ = writeln!(
                out,
                "  … {} more lines: see it all with `ferrisfx executions show {id} -o json`",
                lines.len() - OUTPUT_LINES
            );
        }
    }

    let logs = v["logs"].as_array().cloned().unwrap_or_default();
    out.push_str("\nLogs:\n");
    if logs.is_empty() {
        out.push_str("  (none)\n");
    }
    let retried = logs.iter().any(|l| l["attempt"].as_u64() > Some(1));
    for line in &logs {
        let _ = writeln!(out, "  {}", log_line(line, retried));
    }
    out
}

/// A log line: `12:00:01.123 INFO  message key=value` (`#2 ` first when attempts are told
/// apart).
pub fn log_line(line: &Value, with_attempt: bool) -> String {
    let mut text = String::new();
    if with_attempt {
        text.push_str(&format!("#{} ", cell(&line["attempt"])));
    }
    text.push_str(&format!(
        "{} {:<5} {}",
        clock(&line["at"]),
        line["level"].as_str().unwrap_or("?").to_uppercase(),
        cell(&line["message"])
    ));
    for (key, value) in line["fields"].as_object().into_iter().flatten() {
        text.push_str(&format!(" {key}={}", cell(value)));
    }
    text
}

/// Appends `text` to `out`, each line indented by two spaces.
fn indent(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::output::testing::{assert_documents, lines};

    /// `GET /api/v1/executions` as the API answers it (`Page<ExecutionSummary>`).
    fn listing() -> Value {
        json!({
            "items": [
                {"id": "01JH0000000000000000000002", "handler": "hello", "status": "succeeded",
                 "event_id": "cli-2", "event_source": "/cli", "event_type": "com.example.hello",
                 "attempts": 1, "created_at": "2025-01-31T12:00:01.500Z", "duration_us": 1250},
                {"id": "01JH0000000000000000000001", "handler": "pricing", "status": "queued",
                 "event_id": "o-1", "event_source": "/shop", "event_type": "order.created",
                 "attempts": 0, "created_at": "2025-01-31T12:00:00Z"},
            ],
            "next_cursor": null,
        })
    }

    #[test]
    fn the_list_is_a_table_and_the_documents_the_answer() {
        let view = table(&listing());
        assert_eq!(
            lines(&view),
            [
                "ID                          STATUS     HANDLER  EVENT TYPE         CREATED               DURATION",
                "01JH0000000000000000000002  succeeded  hello    com.example.hello  2025-01-31 12:00:01Z  1ms",
                "01JH0000000000000000000001  queued     pricing  order.created      2025-01-31 12:00:00Z  -",
            ]
        );
        assert!(view.notes.is_empty());
        let empty = table(&json!({"items": [], "next_cursor": null}));
        assert_eq!(
            (empty.out.as_str(), empty.notes),
            ("", vec!["no executions".to_string()])
        );
        assert_documents(&listing(), &table);
    }

    /// `GET /api/v1/executions/{id}` as the API answers it (`ExecutionDetail`): a retried
    /// execution that succeeded on its second attempt.
    fn detail(data: Value) -> Value {
        json!({
            "execution": {
                "id": "01JH0000000000000000000002",
                "handler": "hello",
                "package": {"name": "hello", "version": "1.0.0", "digest": "ab12"},
                "event": {"specversion": "1.0", "id": "cli-2", "source": "/cli",
                          "type": "com.example.hello", "subject": "ferris",
                          "datacontenttype": "application/json", "data": {"name": "Ferris"}},
                "status": "succeeded",
                "attempts": 2,
                "output": [{"specversion": "1.0", "id": "out-1", "source": "/handlers/hello",
                            "type": "com.example.greeting",
                            "datacontenttype": "application/json", "data": data}],
                "created_at": "2025-01-31T12:00:00.100Z",
                "started_at": "2025-01-31T12:00:01.150Z",
                "finished_at": "2025-01-31T12:00:01.162Z",
                "duration_us": 12000,
                "attempt_history": [
                    {"attempt": 1, "status": "retrying", "finished_at": "2025-01-31T12:00:00.200Z",
                     "duration_us": 900, "failure": {"kind": "trap", "message": "unreachable"},
                     "retry_at": "2025-01-31T12:00:01.100Z",
                     "measurements": {"executor": "exec-1", "queue_wait_us": 50000,
                                      "peak_memory_bytes": 65536}},
                    {"attempt": 2, "status": "succeeded", "finished_at": "2025-01-31T12:00:01.162Z",
                     "duration_us": 12000,
                     "measurements": {"executor": "exec-2", "queue_wait_us": 50000,
                                      "compile_cache": "memory", "peak_memory_bytes": 65536}},
                ],
            },
            "logs": [
                {"execution_id": "01JH0000000000000000000002", "handler": "hello", "attempt": 1,
                 "seq": 0, "at": "2025-01-31T12:00:00.150Z", "level": "error",
                 "message": "about to trap"},
                {"execution_id": "01JH0000000000000000000002", "handler": "hello", "attempt": 2,
                 "seq": 0, "at": "2025-01-31T12:00:01.155Z", "level": "info",
                 "message": "greeting", "fields": {"name": "Ferris", "lang": "en"}},
            ],
        })
    }

    #[test]
    fn one_execution_reads_as_a_page() {
        let page = page(&detail(json!("Hello, Ferris!")));
        let expected = "\
ID:       01JH0000000000000000000002
Status:   succeeded (2 attempts)
Handler:  hello
Package:  hello@1.0.0 (sha256 ab12)
Event:    com.example.hello  source /cli  id cli-2  subject ferris
Created:  2025-01-31 12:00:00 UTC
Timings:  queued 12:00:00.100 → started 12:00:01.150 (+1.05s) → finished 12:00:01.162, ran 12ms

Attempts:
  #  STATUS     FINISHED      DURATION  EXECUTOR  NOTE
  1  retrying   12:00:00.200  900µs     exec-1    trap: unreachable; retry at 12:00:01.100
  2  succeeded  12:00:01.162  12ms      exec-2

Output (1 event):
  com.example.greeting (id out-1)
    Hello, Ferris!

Logs:
  #1 12:00:00.150 ERROR about to trap
  #2 12:00:01.155 INFO  greeting lang=en name=Ferris
";
        assert_eq!(page, expected);
        assert_documents(&detail(json!({"a": 1})), &|v| View::text(super::page(v)));
    }

    #[test]
    fn a_long_output_is_cut_with_the_way_to_see_it_all() {
        let long: Vec<u32> = (0..100).collect();
        let page = page(&detail(json!({ "items": long })));
        assert!(page.contains("      \"items\": [\n        0,\n"), "{page}");
        assert!(
            page.contains(
                "  … 65 more lines: see it all with `ferrisfx executions show 01JH0000000000000000000002 -o json`\n"
            ),
            "{page}"
        );
        assert!(!page.contains("        99\n"), "{page}");
    }

    #[test]
    fn a_failed_execution_shows_its_error_and_no_logs() {
        let v = json!({"execution": {
            "id": "x", "handler": "h", "event": {"type": "t", "source": "/s", "id": "1"},
            "status": "failed", "attempts": 1, "output": [],
            "error": {"kind": "timeout", "message": "ran over 5s"},
            "created_at": "2025-01-31T12:00:00Z"}, "logs": []});
        let page = page(&v);
        assert!(
            page.contains("\nError:    timeout: ran over 5s\n"),
            "{page}"
        );
        assert!(page.contains("Package:  - (not resolved yet)\n"), "{page}");
        assert!(page.ends_with("Logs:\n  (none)\n"), "{page}");
        assert!(!page.contains("Output"), "{page}");
    }
}
