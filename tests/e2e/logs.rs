//! `ferrisfx logs HANDLER -f` (issue 20): the CLI follows a handler's function log lines live
//! from a running platform, printing the stored ones first and then each new one exactly once
//! as events run the `hello` example; it stops at `--limit`, refuses a handler that does not
//! exist, keeps waiting (saying so) when the server goes away, and ends cleanly on Ctrl-C.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use fx_core::testsupport::poll_until;
use fx_tests::processes::cli_command;
use fx_tests::TestPlatform;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// What the `hello` function logs once per event.
const HELLO: &str = "hello from FerrisFX";

/// `ferrisfx <args>` against `server`, its output piped, killed when dropped.
fn ferrisfx(server: &str, config: &Path, args: &[&str]) -> Command {
    let mut command = cli_command(server, config, args);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// Reads JSON lines from `out` until `done` holds for the event ids of the `hello` lines read
/// (counted), failing after 60 s.
async fn read_until(
    out: &mut Lines<BufReader<ChildStdout>>,
    seen: &mut BTreeMap<String, usize>,
    done: impl Fn(&BTreeMap<String, usize>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done(seen) {
        let line = tokio::time::timeout_at(deadline, out.next_line())
            .await
            .unwrap_or_else(|_| panic!("no more lines within 60 s; read {seen:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("ferrisfx logs ended; read {seen:?}"));
        let line: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a json line ({e}): {line}"));
        assert_eq!(line["handler"], "greeter", "{line}");
        if line["message"] == HELLO {
            let id = line["fields"]["event_id"].as_str().unwrap().to_string();
            *seen.entry(id).or_default() += 1;
        }
    }
}

/// Reads standard error until a line contains `text`, failing after 60 s.
async fn stderr_says(err: &mut Lines<BufReader<ChildStderr>>, text: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let line = tokio::time::timeout_at(deadline, err.next_line())
            .await
            .unwrap_or_else(|_| panic!("standard error did not say {text:?} within 60 s"))
            .unwrap()
            .unwrap_or_else(|| panic!("standard error closed before saying {text:?}"));
        if line.contains(text) {
            return line;
        }
    }
}

fn pipes(child: &mut Child) -> (Lines<BufReader<ChildStdout>>, Lines<BufReader<ChildStderr>>) {
    (
        BufReader::new(child.stdout.take().unwrap()).lines(),
        BufReader::new(child.stderr.take().unwrap()).lines(),
    )
}

#[tokio::test]
async fn following_a_handler_prints_each_function_log_line_once_as_events_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), false).await;
    fx.upload_example("hello").await;
    fx.handler("greeter", "hello", "com.example.greet", json!({}))
        .await;
    let server = fx.base.clone();

    // Lines stored before following starts come first.
    for i in 0..3 {
        fx.emit(
            &format!("before-{i}"),
            "com.example.greet",
            json!({"name": i}),
        )
        .await;
    }
    poll_until(
        "the first lines are stored",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let (status, page) = fx.get("/api/v1/handlers/greeter/logs").await;
            let stored = page["lines"].as_array().map_or(0, Vec::len);
            if status == 200 && stored >= 3 {
                Ok(())
            } else {
                Err(format!("{status}: {page}"))
            }
        },
    )
    .await;

    let mut follow = ferrisfx(
        &server,
        config.path(),
        &["logs", "greeter", "-f", "-o", "json"],
    )
    .spawn()
    .unwrap();
    let (mut out, mut err) = pipes(&mut follow);
    let mut seen = BTreeMap::new();
    read_until(&mut out, &mut seen, |seen| seen.len() == 3).await;

    // New lines show up while it follows, in bursts and one by one.
    for i in 0..5 {
        fx.emit(
            &format!("live-{i}"),
            "com.example.greet",
            json!({"name": i}),
        )
        .await;
    }
    read_until(&mut out, &mut seen, |seen| seen.len() == 8).await;
    for i in 5..8 {
        fx.emit(
            &format!("live-{i}"),
            "com.example.greet",
            json!({"name": i}),
        )
        .await;
        read_until(&mut out, &mut seen, |seen| seen.len() == 9 + i - 5).await;
    }
    // A last event: by the time its line is printed, later polls have read every earlier
    // line again, and none was printed twice.
    fx.emit("last", "com.example.greet", json!({})).await;
    read_until(&mut out, &mut seen, |seen| seen.contains_key("last")).await;
    assert_eq!(seen.len(), 12, "{seen:?}");
    assert!(seen.values().all(|&n| n == 1), "each line once: {seen:?}");
    assert_eq!(follow.try_wait().unwrap(), None, "still following");

    // A line that arrives late, stamped before the newest one printed (as a long execution's
    // are when it finishes): the periodic re-read of the lookback window prints it, once.
    let (_, page) = fx.get("/api/v1/handlers/greeter/logs").await;
    let newest: chrono::DateTime<chrono::Utc> = page["lines"]
        .as_array()
        .and_then(|lines| lines.last())
        .and_then(|line| line["at"].as_str())
        .expect("stored lines")
        .parse()
        .unwrap();
    let late = fx_core::execution::LogLine {
        execution_id: fx_core::execution::ExecutionId::derive("/late", "late", "greeter"),
        handler: "greeter".into(),
        attempt: 1,
        seq: 0,
        at: newest - chrono::Duration::milliseconds(1),
        level: fx_core::execution::LogLevel::Info,
        message: HELLO.into(),
        fields: [("event_id".to_string(), "late".to_string())].into(),
    };
    fx.backends().sink.store_logs(&[late]).await.unwrap();
    read_until(&mut out, &mut seen, |seen| seen.contains_key("late")).await;
    fx.emit("after-late", "com.example.greet", json!({})).await;
    read_until(&mut out, &mut seen, |seen| seen.contains_key("after-late")).await;
    assert_eq!(seen.len(), 14, "{seen:?}");
    assert!(seen.values().all(|&n| n == 1), "each line once: {seen:?}");

    // Without --follow, text lines, stopping at --limit.
    let listed = ferrisfx(&server, config.path(), &["logs", "greeter", "--limit", "2"])
        .output()
        .await
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let text = String::from_utf8(listed.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    for line in text.lines() {
        assert!(
            line.contains(" INFO  ") && line.contains(HELLO) && line.contains("event_id=before-"),
            "{line}"
        );
    }

    // A handler that does not exist: a clear error and a failure status.
    let missing = ferrisfx(&server, config.path(), &["logs", "nosuch", "-f"])
        .output()
        .await
        .unwrap();
    assert!(!missing.status.success(), "{missing:?}");
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(said.contains("handler \"nosuch\" does not exist"), "{said}");

    // The server goes away: following says so and keeps waiting.
    fx.stop().await;
    let line = stderr_says(&mut err, "retrying").await;
    assert!(
        line.contains("cannot reach") || line.contains(&server),
        "{line}"
    );
    assert_eq!(follow.try_wait().unwrap(), None, "still following");

    // Ctrl-C ends it, and that is no failure.
    let pid = follow.id().unwrap().to_string();
    let interrupted = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(interrupted.success());
    let status = tokio::time::timeout(Duration::from_secs(30), follow.wait())
        .await
        .expect("ferrisfx logs ends within 30 s of Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
