//! The CLI's output for people and for scripts (issue 20): every list command prints a table
//! with its header by default and the API's document with `-o json` / `-o yaml`;
//! `executions show` prints a readable page of a real execution; `--watch` piped prints one
//! compact JSON document per line and stops on Ctrl-C with status 0.

use std::process::Output;
use std::time::Duration;

use fx_tests::TestPlatform;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

/// Runs the `ferrisfx` binary against `base` (never blocking the runtime's worker that may be
/// serving it); asserts it succeeded.
async fn cli(base: &str, config: &std::path::Path, args: &[&str]) -> Output {
    let out = fx_tests::processes::cli_command(base, config, args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "ferrisfx {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A list command and what its outputs hold.
struct Listed {
    /// The command's arguments.
    args: &'static [&'static str],
    /// The table's columns.
    header: &'static [&'static str],
    /// Cells one of its rows holds side by side.
    row: &'static [&'static str],
    /// The list in the API's document.
    key: &'static str,
}

/// A table's line as its cells (columns are two or more spaces apart).
fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .map(str::to_string)
        .collect()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_prints_a_table_or_the_apis_document() {
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(&dir.path().join("data"), false).await;
    let config = dir.path().join("config");
    let base = fx.base.clone();

    fx.upload_example("hello").await;
    fx.handler("hello", "hello", "com.example.hello", json!({}))
        .await;
    for (path, body) in [
        (
            "/api/v1/schedules",
            json!({"name": "hourly", "every_seconds": 3600}),
        ),
        (
            "/api/v1/hooks",
            json!({"name": "ping", "verify": {"kind": "none"},
                   "transform": {"kind": "json", "type": "com.example.ping"}}),
        ),
        (
            "/api/v1/notifications",
            json!({"name": "oncall", "handlers": ["hello"], "on": ["failed"],
                   "target": {"kind": "webhook", "url": "http://127.0.0.1:9/alerts"}}),
        ),
        (
            "/api/v1/workflows",
            json!({"name": "single", "steps": [
                {"name": "greet", "package": {"name": "hello", "version": "latest"}}]}),
        ),
    ] {
        let (status, v) = fx.post_json(path, &body).await;
        assert_eq!(status, 201, "{path}: {v}");
    }
    fx.emit(
        "cli-output-1",
        "com.example.hello",
        json!({"name": "Ferris"}),
    )
    .await;
    fx.wait_event_succeeded("hello", "cli-output-1", Duration::from_secs(60))
        .await;

    let lists = [
        Listed {
            args: &["package", "list"],
            header: &["NAME", "LATEST VERSION", "VERSIONS", "ALIASES"],
            row: &["hello"],
            key: "packages",
        },
        Listed {
            args: &["handler", "list"],
            header: &["NAME", "PACKAGE", "MATCHES", "POOL", "ENABLED", "REVISION"],
            row: &[
                "hello",
                "hello@latest",
                "type=com.example.hello",
                "default",
                "yes",
            ],
            key: "handlers",
        },
        Listed {
            args: &["executions", "list"],
            header: &[
                "ID",
                "STATUS",
                "HANDLER",
                "EVENT TYPE",
                "CREATED",
                "DURATION",
            ],
            row: &["succeeded", "hello", "com.example.hello"],
            key: "items",
        },
        Listed {
            args: &["schedule", "list"],
            header: &["NAME", "WHEN", "STATUS", "NEXT", "LAST TICK", "REVISION"],
            row: &["hourly", "every 3600s", "active"],
            key: "schedules",
        },
        Listed {
            args: &["hook", "list"],
            header: &[
                "NAME",
                "VERIFY",
                "SECRET",
                "TRANSFORM",
                "RATE",
                "ENABLED",
                "URL",
            ],
            row: &["ping", "none", "-", "json", "10/s burst 20", "yes"],
            key: "hooks",
        },
        Listed {
            args: &["notification", "list"],
            header: &[
                "NAME",
                "HANDLERS",
                "ON",
                "TARGET",
                "URL",
                "SECRET",
                "MAX ATTEMPTS",
                "ENABLED",
            ],
            row: &[
                "oncall",
                "hello",
                "failed",
                "webhook",
                "http://127.0.0.1:9/alerts",
            ],
            key: "notifications",
        },
        Listed {
            args: &["workflow", "list"],
            header: &[
                "NAME",
                "STEPS",
                "LAYERS",
                "ON FAILURE",
                "TRIGGER",
                "REVISION",
            ],
            row: &["single", "1", "1", "stop", "-"],
            key: "workflows",
        },
    ];
    for Listed {
        args,
        header,
        row,
        key,
    } in lists
    {
        let table = stdout(&cli(&base, &config, args).await);
        let mut lines = table.lines().map(cells);
        assert_eq!(
            lines.next().unwrap_or_default(),
            header,
            "{args:?}: {table}"
        );
        assert!(
            lines.any(|cells| cells.windows(row.len()).any(|w| w == row)),
            "{args:?}: no row with {row:?}: {table}"
        );
        let mut json_args = args.to_vec();
        json_args.extend(["-o", "json"]);
        let document: Value = serde_json::from_slice(&cli(&base, &config, &json_args).await.stdout)
            .unwrap_or_else(|e| panic!("{json_args:?}: {e}"));
        assert!(
            document[key].as_array().is_some_and(|a| !a.is_empty()),
            "{json_args:?}: {document:#}"
        );
        let mut yaml_args = args.to_vec();
        yaml_args.extend(["-o", "yaml"]);
        let yaml = stdout(&cli(&base, &config, &yaml_args).await);
        assert!(
            yaml.lines().any(|line| line == format!("{key}:")),
            "{yaml_args:?}: {yaml}"
        );
    }

    // Lists with nothing to show: nothing on stdout, the note on stderr; the document all the
    // same.
    let runs = cli(&base, &config, &["workflow", "runs"]).await;
    assert_eq!(stdout(&runs), "");
    assert_eq!(String::from_utf8_lossy(&runs.stderr), "no runs\n");
    let runs: Value = serde_json::from_slice(
        &cli(&base, &config, &["workflow", "runs", "-o", "json"])
            .await
            .stdout,
    )
    .unwrap();
    assert_eq!(runs["runs"], json!([]), "{runs}");
    for (args, key) in [
        (&["secret", "list"][..], "secrets"),
        (&["catalogue", "list"][..], "entries"),
    ] {
        cli(&base, &config, args).await;
        let mut json_args = args.to_vec();
        json_args.extend(["-o", "json"]);
        let document: Value =
            serde_json::from_slice(&cli(&base, &config, &json_args).await.stdout).unwrap();
        assert!(document[key].is_array(), "{json_args:?}: {document}");
    }
    // The old `--json` of the catalogue still works.
    let old: Value = serde_json::from_slice(
        &cli(&base, &config, &["catalogue", "list", "--json"])
            .await
            .stdout,
    )
    .unwrap();
    assert!(old["entries"].is_array(), "{old}");

    // One execution as a page, and as the API's document.
    let id = fx.executions("hello").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let page = stdout(&cli(&base, &config, &["executions", "show", &id]).await);
    for expected in [
        format!("ID:       {id}\n"),
        "Status:   succeeded (1 attempt)\n".to_string(),
        "Handler:  hello\n".to_string(),
        "Package:  hello@".to_string(),
        "Event:    com.example.hello  source /tests  id cli-output-1\n".to_string(),
        "Timings:  queued ".to_string(),
        "\nAttempts:\n  #  STATUS     FINISHED".to_string(),
        "\nOutput (1 event):\n  com.ferrisfx.hello.greeted (id cli-output-1-greeting)\n"
            .to_string(),
        "\"greeting\": \"Hello, Ferris!\"".to_string(),
        " INFO  hello from FerrisFX event_id=cli-output-1 event_type=com.example.hello\n"
            .to_string(),
    ] {
        assert!(page.contains(&expected), "no {expected:?} in:\n{page}");
    }
    let detail: Value = serde_json::from_slice(
        &cli(&base, &config, &["executions", "show", &id, "-o", "json"])
            .await
            .stdout,
    )
    .unwrap();
    assert_eq!(detail["execution"]["id"], id.as_str(), "{detail:#}");
    assert_eq!(detail, fx.execution(&id).await);

    // Watching, piped: one compact JSON document a line (the first at once), Ctrl-C ends it
    // with status 0.
    let mut watch = fx_tests::processes::cli_command(
        &base,
        &config,
        &["handler", "list", "-w", "--interval", "200ms", "-o", "json"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a first snapshot")
        .unwrap()
        .unwrap();
    let snapshot: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        snapshot["handlers"][0]["handler"]["name"], "hello",
        "{first}"
    );
    let pid = watch.id().unwrap().to_string();
    let kill = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(30), watch.wait())
        .await
        .expect("the watch stops on Ctrl-C")
        .unwrap();
    assert!(
        status.success(),
        "Ctrl-C ends a watch with status 0: {status:?}"
    );
    assert_eq!(
        lines.next_line().await.unwrap(),
        None,
        "nothing changed: no second snapshot"
    );

    fx.stop().await;
}
