//! Schedules end to end: ticks become `com.ferrisfx.schedule.fired` events that run handlers,
//! once per tick however many gateways fire them, paused and resumed through the API, and
//! missed ticks after a restart handled as the schedule says.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fx_core::schedule::FIRED_TYPE;
use fx_core::testenv;
use fx_core::testsupport::{unique, HandlerBuilder};
use fx_tests::processes::Deployment;
use fx_tests::Api;
use serde_json::{json, Value};

/// Uploads `hello` and creates handler `on-tick` on every schedule tick.
async fn tick_handler(api: &Api) {
    api.upload_example("hello").await;
    api.create_handler(
        &HandlerBuilder::new("on-tick")
            .event_type(FIRED_TYPE)
            .package("hello")
            .build(),
    )
    .await;
}

/// Creates schedule `body`, asserting 201; returns the answer.
async fn create_schedule(api: &Api, body: Value) -> Value {
    let (status, v) = api.post_json("/api/v1/schedules", &body).await;
    assert_eq!(status, 201, "creating schedule {body}: {v}");
    v
}

/// The tick instants the executions of `on-tick` ran for, checking that none ran twice and
/// each came from schedule `name`.
fn ticks_of(executions: &[Value], name: &str) -> Vec<DateTime<Utc>> {
    let ids: Vec<&str> = executions
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "a tick ran twice: {ids:?}");
    let mut ticks: Vec<DateTime<Utc>> = executions
        .iter()
        .map(|e| {
            assert_eq!(e["event_source"], format!("/schedules/{name}"), "{e}");
            let id = e["event_id"].as_str().unwrap();
            let at = id
                .strip_prefix(&format!("{name}@"))
                .unwrap_or_else(|| panic!("tick event id {id:?}"));
            at.parse().unwrap()
        })
        .collect();
    ticks.sort();
    ticks
}

/// How late each tick fired by process `index` was, in milliseconds, in the order fired
/// (its `schedule fired` log lines).
fn fired_late_ms(d: &Deployment, index: usize) -> Vec<i64> {
    d.log_of(index)
        .lines()
        .filter(|l| l.contains("schedule fired"))
        .map(|line| {
            let plain = strip_ansi(line);
            plain
                .split_whitespace()
                .find_map(|w| w.strip_prefix("late_ms="))
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or_else(|| panic!("no late_ms in {plain:?}"))
        })
        .collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_runs_its_handler_once_per_tick_and_pauses_resumes_and_deletes_through_the_api()
{
    let dir = tempfile::tempdir().unwrap();
    let mut d = Deployment::new(dir.path(), "[gateway]\nschedule_grace_ms = 5000\n");
    d.start("dev", &[]);
    d.wait_ready().await;
    let api = Api::new(d.base.clone());
    tick_handler(&api).await;

    // Refused with the reason: a bad cron, two kinds at once, a one-off in the past.
    for (body, says) in [
        (json!({"name": "bad", "cron": "61 * * * *"}), "is not valid"),
        (
            json!({"name": "bad", "cron": "* * * * *", "every_seconds": 5}),
            "exactly one",
        ),
        (
            json!({"name": "bad", "at": "2020-01-01T00:00:00Z"}),
            "in the past",
        ),
        (json!({"name": "bad", "every": 5}), "unknown field"),
    ] {
        let (status, v) = api.post_json("/api/v1/schedules", &body).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v.to_string().contains(says), "{body}: {v}");
    }

    let created = create_schedule(
        &api,
        json!({"name": "tick", "every_seconds": 1, "data": {"job": "report"}}),
    )
    .await;
    assert_eq!(created["schedule"]["every_seconds"], 1);
    let next = created["next"].as_array().unwrap();
    assert_eq!(next.len(), 5, "{created}");
    let (status, _) = api
        .post_json(
            "/api/v1/schedules",
            &json!({"name": "tick", "every_seconds": 1}),
        )
        .await;
    assert_eq!(status, 409, "a second schedule of one name");

    let all = api
        .wait_succeeded("on-tick", 3, Duration::from_secs(60), || d.all_logs())
        .await;
    let ticks = ticks_of(&all, "tick");
    assert!(ticks.iter().all(|t| t.timestamp_subsec_nanos() == 0));
    // No tick from before its creation: the first is the first the answer announced.
    let first_next: DateTime<Utc> = next[0].as_str().unwrap().parse().unwrap();
    assert!(ticks[0] >= first_next, "{ticks:?} before {first_next}");
    // The tick's data reached the function (as the event's data).
    let detail = api.execution(all[0]["id"].as_str().unwrap()).await;
    assert_eq!(
        detail["execution"]["event"]["data"],
        json!({"job": "report"})
    );

    let (status, paused) = api
        .post_json("/api/v1/schedules/tick/pause", &json!({}))
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["schedule"]["paused"], true);
    assert!(paused["next"].as_array().unwrap().is_empty());
    assert!(paused["last_tick"].is_string(), "{paused}");
    // What was in flight lands; then nothing more while paused.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = api.executions("on-tick").await.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        api.executions("on-tick").await.len(),
        settled,
        "a paused schedule fired"
    );

    let (status, resumed) = api
        .post_json("/api/v1/schedules/tick/resume", &json!({}))
        .await;
    assert_eq!(status, 200, "{resumed}");
    let all = api
        .wait_succeeded("on-tick", settled + 2, Duration::from_secs(60), || {
            d.all_logs()
        })
        .await;
    let ticks = ticks_of(&all, "tick");
    // The ticks missed while paused were not caught up: there is a gap of them.
    let gaps = ticks
        .windows(2)
        .filter(|w| w[1] - w[0] > chrono::Duration::seconds(2))
        .count();
    assert_eq!(gaps, 1, "one pause, one gap: {ticks:?}");

    let (status, listed) = api.get("/api/v1/schedules").await;
    assert_eq!(status, 200);
    assert_eq!(listed["schedules"][0]["schedule"]["name"], "tick");
    let (status, _) = api.delete("/api/v1/schedules/tick").await;
    assert_eq!(status, 204);
    let (status, _) = api.get("/api/v1/schedules/tick").await;
    assert_eq!(status, 404);
    d.processes[0].terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_ticks_after_a_restart_are_caught_up_to_the_limit_and_none_runs_twice() {
    let dir = tempfile::tempdir().unwrap();
    let grace_ms = 1_500;
    let mut d = Deployment::new(
        dir.path(),
        &format!("[gateway]\nschedule_grace_ms = {grace_ms}\n"),
    );
    d.start("dev", &[]);
    d.wait_ready().await;
    let api = Api::new(d.base.clone());
    tick_handler(&api).await;
    create_schedule(
        &api,
        json!({"name": "tick", "every_seconds": 1, "missed": "catch_up", "catch_up_limit": 2}),
    )
    .await;
    api.wait_succeeded("on-tick", 2, Duration::from_secs(60), || d.all_logs())
        .await;
    d.processes[0].terminate();
    let before = fired_late_ms(&d, 0).len();
    // Down for 5 s: with the restart, at least three ticks become older than the grace.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restarted = d.start("dev", &[]);
    d.wait_ready().await;
    let all = api
        .wait_succeeded("on-tick", before + 4, Duration::from_secs(60), || {
            d.all_logs()
        })
        .await;
    let (status, _) = api
        .post_json("/api/v1/schedules/tick/pause", &json!({}))
        .await;
    assert_eq!(status, 200);
    ticks_of(&all, "tick");
    // The restarted scheduler's first round fired exactly the limit of missed ticks (older
    // than the grace), then the ticks on time.
    let late = fired_late_ms(&d, restarted);
    let caught_up = late.iter().take_while(|ms| **ms > grace_ms).count();
    assert_eq!(caught_up, 2, "{late:?}\n{}", d.all_logs());
    d.processes[restarted].terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_gateways_each_tick_fires_once_and_runs_once() {
    let Some(kafka) = testenv::backend("FX_TEST_KAFKA", "schedules with two gateways") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = unique("fxsched").replace('-', "");
    let mut toml = format!(
        "[backends.bus]\nkind = \"kafka\"\nbrokers = \"{kafka}\"\ntopic_prefix = \"{run}.\"\npartitions = 3\nsession_timeout_ms = 6000\n\n"
    );
    if let Ok(url) = std::env::var("FX_TEST_POSTGRES") {
        toml.push_str(&format!(
            "[backends.state]\nkind = \"postgres\"\nurl = \"{url}\"\nschema = \"{run}\"\n\n"
        ));
    }
    let mut d = Deployment::new(dir.path(), &toml);
    d.start("server", &[]);
    d.wait_ready().await;
    let api = Api::new(d.base.clone());
    tick_handler(&api).await;
    let gateways = [d.start("gateway", &[]), d.start("gateway", &[])];
    d.start("executor", &[]);
    create_schedule(&api, json!({"name": "tick", "every_seconds": 1})).await;
    api.wait_succeeded("on-tick", 6, Duration::from_secs(120), || d.all_logs())
        .await;
    let (status, _) = api
        .post_json("/api/v1/schedules/tick/pause", &json!({}))
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = api
        .wait_succeeded("on-tick", 6, Duration::from_secs(60), || d.all_logs())
        .await;
    let ticks = ticks_of(&all, "tick");
    // Every tick fired by one gateway only, each firing one execution.
    let fired: usize = gateways.iter().map(|g| fired_late_ms(&d, *g).len()).sum();
    assert_eq!(fired, ticks.len(), "\n{}", d.all_logs());
    for g in gateways {
        assert!(d.log_of(g).contains("scheduler started"), "{}", d.log_of(g));
    }
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}
