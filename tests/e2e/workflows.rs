//! Workflows end to end (issue 18): a diamond whose middle steps overlap and whose last step
//! sees both outputs, each failure policy, edges on failure, a map over 20 items joined in
//! order, cancel and re-drive, runs started by an event, an invalid graph refused with its
//! cycle named, and (over Kafka and PostgreSQL) a run that survives `kill -9` of the executor
//! and of the gateway with no step recorded twice. The steps run the `workflow-step` example,
//! steered by the run's input (sleep, fail).

use std::time::Duration;

use fx_core::testenv;
use fx_core::testsupport::{poll_until, unique};
use fx_tests::processes::Deployment;
use fx_tests::{Api, TestPlatform};
use serde_json::{json, Value};

fn step(name: &str, after: &[&str]) -> Value {
    json!({
        "name": name,
        "package": {"name": "workflow-step"},
        "after": after.iter().map(|s| json!({"step": s})).collect::<Vec<_>>(),
    })
}

/// Creates workflow `body`, asserting 201.
async fn create(api: &Api, body: Value) {
    let (status, v) = api.post_json("/api/v1/workflows", &body).await;
    assert_eq!(status, 201, "creating workflow {body}: {v}");
}

/// Starts a run of `workflow` with `input`; its id.
async fn start(api: &Api, workflow: &str, input: Value) -> String {
    let (status, v) = api
        .post_json(
            &format!("/api/v1/workflows/{workflow}/runs"),
            &json!({ "input": input }),
        )
        .await;
    assert_eq!(status, 201, "starting {workflow}: {v}");
    v["run"].as_str().unwrap().to_string()
}

/// Waits until run `id` has finished (and no step still runs); the run and its outputs.
async fn finished(api: &Api, id: &str, context: impl Fn() -> String) -> Value {
    let context = &context;
    poll_until(
        &format!("run {id} finishes"),
        Duration::from_secs(120),
        Duration::from_millis(100),
        || async move {
            let (status, v) = api.get(&format!("/api/v1/runs/{id}")).await;
            assert_eq!(status, 200, "{v}");
            if v["run"]["finished_at"].is_string() {
                Ok(v)
            } else {
                Err(format!("{:#}\n{}", v["run"]["steps"], context()))
            }
        },
    )
    .await
}

/// The status of step `name` of `run` (as `GET /api/v1/runs/{id}` shows it).
fn status<'a>(run: &'a Value, name: &str) -> &'a str {
    run["run"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {run:#}"))["status"]
        .as_str()
        .unwrap()
}

/// The step run `name` of `run`.
fn step_of<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["run"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

async fn platform() -> (tempfile::TempDir, TestPlatform) {
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), false).await;
    fx.upload_example("workflow-step").await;
    (dir, fx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diamond_runs_its_middle_steps_together_and_the_last_sees_both_outputs() {
    let (_dir, fx) = platform().await;
    let api: &Api = &fx;
    create(
        api,
        json!({"name": "diamond", "steps": [
            step("d", &["b", "c"]), step("b", &["a"]), step("c", &["a"]), step("a", &[]),
        ]}),
    )
    .await;
    let id = start(
        api,
        "diamond",
        json!({"sleep_ms": {"b": 1500, "c": 1500}, "order": 7}),
    )
    .await;
    let run = finished(api, &id, String::new).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    let out = &run["outputs"];
    // B and C overlapped in time.
    let (b0, b1) = (
        out["b"]["started_ms"].as_u64().unwrap(),
        out["b"]["finished_ms"].as_u64().unwrap(),
    );
    let (c0, c1) = (
        out["c"]["started_ms"].as_u64().unwrap(),
        out["c"]["finished_ms"].as_u64().unwrap(),
    );
    assert!(
        b0 < c1 && c0 < b1,
        "b [{b0}, {b1}] and c [{c0}, {c1}] did not overlap"
    );
    // D started after both and got both outputs.
    assert_eq!(out["d"]["received"], json!(["b", "c"]), "{out:#}");
    assert_eq!(out["d"]["outputs"]["b"]["step"], "b");
    assert_eq!(out["d"]["outputs"]["c"]["step"], "c");
    assert!(out["d"]["started_ms"].as_u64().unwrap() >= b1.max(c1));
    assert_eq!(out["b"]["outputs"]["a"]["step"], "a");
    // One execution per step, and its input names the run; a step opens its execution.
    for name in ["a", "b", "c", "d"] {
        let executions = api.executions(&format!("workflow.diamond.{name}")).await;
        assert_eq!(executions.len(), 1, "step {name}: {executions:#?}");
        let recorded = step_of(&run, name)["executions"][0].as_str().unwrap();
        assert_eq!(executions[0]["id"], recorded);
        let detail = api.execution(recorded).await;
        assert_eq!(
            detail["execution"]["event"]["data"]["run"],
            id.as_str(),
            "{detail:#}"
        );
        assert_eq!(detail["execution"]["event"]["data"]["input"]["order"], 7);
    }
    // The step outputs were not published as events: nothing else ran.
    let (_, all) = api.get("/api/v1/executions?limit=100").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 4, "{all:#}");
    // Listed, filterable, drawn.
    let (_, runs) = api
        .get("/api/v1/runs?workflow=diamond&status=succeeded")
        .await;
    assert_eq!(runs["runs"][0]["id"], id.as_str(), "{runs:#}");
    let (_, none) = api.get("/api/v1/runs?workflow=diamond&status=failed").await;
    assert!(none["runs"].as_array().unwrap().is_empty());
    let (status, svg) = api.get_text(&format!("/api/v1/runs/{id}/graph.svg")).await;
    assert_eq!(status, 200);
    assert_eq!(
        svg.matches(r#"data-status="succeeded""#).count(),
        4,
        "{svg}"
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_stops_the_rest_or_lets_independent_branches_finish() {
    let (_dir, fx) = platform().await;
    let api: &Api = &fx;
    let steps = json!([
        step("a", &[]),
        step("a2", &["a"]),
        step("b", &[]),
        step("b2", &["b"]),
        {"name": "on-error", "package": {"name": "workflow-step"}, "after": [{"step": "a", "on": "failure"}]},
        {"name": "cleanup", "package": {"name": "workflow-step"}, "after": [{"step": "a2", "on": "always"}]},
    ]);
    create(
        api,
        json!({"name": "stops", "on_failure": "stop", "steps": steps}),
    )
    .await;
    create(
        api,
        json!({"name": "goes-on", "on_failure": "continue", "steps": steps}),
    )
    .await;
    // a fails while b still runs: b finishes either way.
    let input = json!({"fail": ["a"], "sleep_ms": {"b": 1500}});
    let stop_id = start(api, "stops", input.clone()).await;
    let go_id = start(api, "goes-on", input).await;

    // The failure is handled by an edge (on-error runs), so "stop" does not cancel: a2 is
    // skipped (its edge wants success) and cleanup runs (always).
    let run = finished(api, &stop_id, String::new).await;
    assert_eq!(status(&run, "a"), "failed");
    assert_eq!(status(&run, "on-error"), "succeeded");
    assert_eq!(status(&run, "a2"), "skipped");
    assert_eq!(status(&run, "b"), "succeeded");
    assert_eq!(status(&run, "b2"), "succeeded");
    assert_eq!(
        run["run"]["status"], "succeeded",
        "a's failure was handled: {run:#}"
    );
    assert_eq!(run["outputs"]["on-error"]["received"], json!([]));
    let detail = api
        .execution(step_of(&run, "on-error")["executions"][0].as_str().unwrap())
        .await;
    assert!(
        detail["execution"]["event"]["data"]["failed"]["a"]
            .as_str()
            .unwrap()
            .contains("requested failure of a"),
        "{detail:#}"
    );
    let run = finished(api, &go_id, String::new).await;
    assert_eq!(run["run"]["status"], "succeeded");

    // Unhandled: b fails. Under stop, b2 and the later steps do not start.
    create(
        api,
        json!({"name": "plain-stop", "on_failure": "stop", "steps": [
            step("a", &[]), step("a2", &["a"]), step("b", &[]), step("b2", &["b"]),
        ]}),
    )
    .await;
    create(
        api,
        json!({"name": "plain-continue", "on_failure": "continue", "steps": [
            step("a", &[]), step("a2", &["a"]), step("b", &[]), step("b2", &["b"]),
        ]}),
    )
    .await;
    let input = json!({"fail": ["b"], "sleep_ms": {"a": 1000}});
    let stop_id = start(api, "plain-stop", input.clone()).await;
    let go_id = start(api, "plain-continue", input).await;
    let run = finished(api, &stop_id, String::new).await;
    assert_eq!(run["run"]["status"], "failed", "{run:#}");
    assert_eq!(status(&run, "b"), "failed");
    assert_eq!(status(&run, "a"), "succeeded", "a was running: it finishes");
    assert_eq!(status(&run, "a2"), "cancelled", "{run:#}");
    assert_eq!(status(&run, "b2"), "cancelled");
    assert!(step_of(&run, "a2")["reason"]
        .as_str()
        .unwrap()
        .contains("step b failed"));
    let run = finished(api, &go_id, String::new).await;
    assert_eq!(run["run"]["status"], "failed", "{run:#}");
    assert_eq!(
        status(&run, "a2"),
        "succeeded",
        "an independent branch goes on"
    );
    assert_eq!(status(&run, "b2"), "skipped");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_over_20_items_fans_out_and_joins_in_order() {
    let (_dir, fx) = platform().await;
    let api: &Api = &fx;
    create(
        api,
        json!({"name": "fan", "steps": [
            {"name": "each", "package": {"name": "workflow-step"}, "map": "/input/items"},
            step("join", &["each"]),
        ]}),
    )
    .await;
    let items: Vec<i64> = (0..20).map(|i| i * 10).collect();
    let id = start(api, "fan", json!({ "items": items })).await;
    let run = finished(api, &id, String::new).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(
        step_of(&run, "each")["executions"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
    assert_eq!(api.executions("workflow.fan.each").await.len(), 20);
    let joined = run["outputs"]["join"]["outputs"]["each"]
        .as_array()
        .unwrap();
    let doubles: Vec<f64> = joined
        .iter()
        .map(|o| o["double"].as_f64().unwrap())
        .collect();
    let expected: Vec<f64> = items.iter().map(|i| (i * 2) as f64).collect();
    assert_eq!(doubles, expected, "joined in item order");
    let indexes: Vec<u64> = joined
        .iter()
        .map(|o| o["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, (0..20).collect::<Vec<u64>>());

    // One failing item fails the step, naming it; a map over something else cannot start.
    let id = start(api, "fan", json!({"items": [1, 2, 3], "fail_items": [1]})).await;
    let run = finished(api, &id, String::new).await;
    assert_eq!(status(&run, "each"), "failed");
    assert!(
        step_of(&run, "each")["reason"]
            .as_str()
            .unwrap()
            .starts_with("item 1:"),
        "{run:#}"
    );
    assert_eq!(status(&run, "join"), "cancelled");
    let id = start(api, "fan", json!({"items": "nope"})).await;
    let run = finished(api, &id, String::new).await;
    assert!(
        step_of(&run, "each")["reason"]
            .as_str()
            .unwrap()
            .contains("not a list"),
        "{run:#}"
    );
    let id = start(api, "fan", json!({"items": []})).await;
    let run = finished(api, &id, String::new).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["outputs"]["join"]["outputs"]["each"], json!([]));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_runs_its_function_once_while_conductors_race() {
    // The API call starts 40 independent steps one after another while the router, as the
    // first ones finish, moves the same run: both find the later steps ready. Only the
    // conductor that created a step's execution may publish it.
    let (_dir, fx) = platform().await;
    let api: &Api = &fx;
    let names: Vec<String> = (0..40).map(|i| format!("s{i:02}")).collect();
    let steps: Vec<Value> = names.iter().map(|n| step(n, &[])).collect();
    create(api, json!({"name": "wide", "steps": steps})).await;
    let id = start(api, "wide", json!({})).await;
    let run = finished(api, &id, String::new).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    // A second run of an execution would finish after the run is recorded: give it time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, text) = fx.get_text("/metrics").await;
    assert_eq!(status, 200);
    for name in &names {
        let series =
            format!(r#"fx_invocations_total{{handler="workflow.wide.{name}",status="succeeded"}}"#);
        assert_eq!(
            crate::metrics::sample(&text, &series),
            Some(1.0),
            "step {name}'s function runs:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_nested_too_deep_is_refused_at_the_api_and_fails_the_step_that_would_get_it() {
    let (_dir, fx) = platform().await;
    let api: &Api = &fx;
    create(
        api,
        json!({"name": "deep", "steps": [step("a", &[]), step("b", &["a"])]}),
    )
    .await;
    let nested = |levels: usize| (0..levels).fold(json!(1), |inner, _| json!([inner]));
    // An input of 65 levels: refused with the reason, no run.
    let (code, v) = api
        .post_json(
            "/api/v1/workflows/deep/runs",
            &json!({"input": {"deep": nested(64)}}),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    assert!(v.to_string().contains("64 levels"), "{v}");
    // An input of 62 levels reaches step a (63 with its context); a echoes it, so b's input
    // would nest 65 levels: b does not start, and the run says why.
    let id = start(api, "deep", json!({"echo": ["a"], "deep": nested(61)})).await;
    let run = finished(api, &id, String::new).await;
    assert_eq!(run["run"]["status"], "failed", "{run:#}");
    assert_eq!(status(&run, "a"), "succeeded");
    assert_eq!(status(&run, "b"), "failed");
    let reason = step_of(&run, "b")["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("64 levels"), "{run:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_graph_is_refused_with_the_problem_named() {
    let (_dir, fx) = platform().await;
    let api: &Api = &fx;
    let (status, v) = api
        .post_json(
            "/api/v1/workflows",
            &json!({"name": "loop", "steps": [
                step("a", &[]), step("b", &["a", "d"]), step("c", &["b"]), step("d", &["c"]),
            ]}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    // Named with its steps in run order, from whichever step the search met first.
    assert!(
        ["b → c → d → b", "c → d → b → c", "d → b → c → d"]
            .iter()
            .any(|cycle| message.contains(cycle)),
        "{message}"
    );
    let (status, v) = api
        .post_json(
            "/api/v1/workflows",
            &json!({"name": "ghost", "steps": [
                {"name": "a", "package": {"name": "no-such-package"}},
            ]}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-package"),
        "{v}"
    );
    let (status, v) = api
        .post_json(
            "/api/v1/workflows",
            &json!({"name": "dangling", "steps": [step("a", &["missing"])]}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("missing"),
        "{v}"
    );
    let many: Vec<Value> = (0..1001).map(|i| step(&format!("s{i}"), &[])).collect();
    let (status, v) = api
        .post_json("/api/v1/workflows", &json!({"name": "huge", "steps": many}))
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("1000"),
        "{v}"
    );
    // Gorchestrator's matrix form, converted by the CLI's import, lands as a workflow too.
    let (status, v) = api.get("/api/v1/workflows").await;
    assert_eq!(status, 200);
    assert!(v["workflows"].as_array().unwrap().is_empty(), "{v}");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_cancelled_and_a_failed_run_is_redriven_from_its_failed_steps() {
    let (_dir, fx) = platform().await;
    let api: &Api = &fx;
    api.upload_example("misbehave").await;
    // Step b runs handler `flaky`: misbehave fails on a workflow step's event.
    let (s, v) = api
        .post_json(
            "/api/v1/handlers",
            &json!({"name": "flaky", "filter": {"exact": {"attribute": "type", "value": "never.sent"}},
                    "package": {"name": "misbehave"}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    create(
        api,
        json!({"name": "again", "steps": [
            step("a", &[]),
            {"name": "b", "handler": "flaky", "after": [{"step": "a"}]},
            step("c", &["b"]),
        ]}),
    )
    .await;
    let id = start(api, "again", json!({})).await;
    let run = finished(api, &id, String::new).await;
    assert_eq!(run["run"]["status"], "failed", "{run:#}");
    assert_eq!(status(&run, "b"), "failed");
    let a_execution = step_of(&run, "a")["executions"][0].clone();
    // Re-driving a running or succeeded run is refused; the step's execution is not re-run
    // on its own.
    let b_execution = step_of(&run, "b")["executions"][0]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = api
        .post_json(
            &format!("/api/v1/executions/{b_execution}/rerun"),
            &json!({}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    // Fix the handler, re-drive: only b and c run again, a keeps its result.
    let (s, v) = api
        .put_json(
            "/api/v1/handlers/flaky",
            &json!({"name": "flaky", "filter": {"exact": {"attribute": "type", "value": "never.sent"}},
                    "package": {"name": "workflow-step"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .post_json(&format!("/api/v1/runs/{id}/redrive"), &json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let run = finished(api, &id, String::new).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["run"]["generation"], 1);
    assert_eq!(
        step_of(&run, "a")["executions"][0],
        a_execution,
        "a did not run again"
    );
    assert_eq!(api.executions("workflow.again.a").await.len(), 1);
    assert_eq!(
        api.executions("flaky").await.len(),
        2,
        "b ran twice: once per generation"
    );
    assert_eq!(run["outputs"]["c"]["outputs"]["b"]["step"], "b");
    let (s, v) = api
        .post_json(&format!("/api/v1/runs/{id}/redrive"), &json!({}))
        .await;
    assert_eq!(s, 409, "a succeeded run is not re-driven: {v}");

    // Cancel while a sleeps: a finishes and is recorded, b never starts.
    let id = start(api, "again", json!({"sleep_ms": {"a": 2000}})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, v) = api
        .post_json(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let run = finished(api, &id, String::new).await;
    assert_eq!(run["run"]["status"], "cancelled", "{run:#}");
    assert_eq!(status(&run, "a"), "succeeded");
    assert_eq!(status(&run, "b"), "cancelled");
    let (s, _) = api
        .post_json(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(s, 409);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_starts_one_run_however_often_it_is_delivered() {
    let (_dir, fx) = platform().await;
    let api: &Api = &fx;
    create(
        api,
        json!({"name": "on-order", "trigger": {"event": {"exact": {"attribute": "type", "value": "com.example.order.placed"}}},
               "steps": [step("a", &[]), step("b", &["a"])]}),
    )
    .await;
    api.emit("order-1", "com.example.order.placed", json!({"order": 1}))
        .await;
    api.emit("order-1", "com.example.order.placed", json!({"order": 1}))
        .await;
    let runs = poll_until(
        "the event starts a run",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let (_, v) = api.get("/api/v1/runs?workflow=on-order").await;
            let runs = v["runs"].as_array().unwrap().clone();
            if runs.iter().any(|r| r["status"] == "succeeded") {
                Ok(runs)
            } else {
                Err(format!("{runs:#?}"))
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, v) = api.get("/api/v1/runs?workflow=on-order").await;
    assert_eq!(v["runs"].as_array().unwrap().len(), 1, "{v:#}");
    let run = finished(api, runs[0]["id"].as_str().unwrap(), String::new).await;
    assert_eq!(run["run"]["trigger"]["id"], "order-1");
    assert_eq!(run["outputs"]["b"]["outputs"]["a"]["step"], "a");

    // A schedule's ticks start runs too.
    create(
        api,
        json!({"name": "every-second", "trigger": {"schedule": "wf-tick"},
               "steps": [step("a", &[])]}),
    )
    .await;
    let (s, v) = api
        .post_json(
            "/api/v1/schedules",
            &json!({"name": "wf-tick", "every_seconds": 1, "data": {"tick": true}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let run = poll_until(
        "a tick starts a run",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let (_, v) = api
                .get("/api/v1/runs?workflow=every-second&status=succeeded")
                .await;
            v["runs"][0]["id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{v:#}"))
        },
    )
    .await;
    let (s, _) = api
        .post_json("/api/v1/schedules/wf-tick/pause", &json!({}))
        .await;
    assert_eq!(s, 200);
    let run = finished(api, &run, String::new).await;
    assert_eq!(run["run"]["trigger"]["source"], "/schedules/wf-tick");
    assert_eq!(run["outputs"]["a"]["step"], "a");
    fx.stop().await;
}

/// A chain of slow steps over Kafka and PostgreSQL with the server, a gateway and an executor
/// as separate processes: the executor is killed with `kill -9` while a step runs, later the
/// gateway too; the run finishes, every step succeeded once and has one recorded result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_survives_kill_9_of_the_executor_and_of_the_gateway() {
    let test = "workflow survives kill -9";
    let Some(kafka) = testenv::backend("FX_TEST_KAFKA", test) else {
        return;
    };
    let Some(postgres) = testenv::backend("FX_TEST_POSTGRES", test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run_prefix = unique("fxwf").replace('-', "");
    let toml = format!(
        "[backends.bus]\nkind = \"kafka\"\nbrokers = \"{kafka}\"\ntopic_prefix = \"{run_prefix}.\"\npartitions = 1\nsession_timeout_ms = 6000\n\n[backends.state]\nkind = \"postgres\"\nurl = \"{postgres}\"\nschema = \"{run_prefix}\"\n\n"
    );
    let mut d = Deployment::new(dir.path(), &toml);
    d.start("server", &[]);
    d.wait_ready().await;
    let api = Api::new(d.base.clone());
    api.upload_example("workflow-step").await;
    let names = ["s1", "s2", "s3", "s4", "s5"];
    let steps: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut s = step(
                n,
                if i == 0 {
                    &[]
                } else {
                    std::slice::from_ref(&names[i - 1])
                },
            );
            s["retry"] = json!({"max_attempts": 1});
            s
        })
        .collect();
    create(&api, json!({"name": "chain", "steps": steps})).await;
    let mut gateway = d.start("gateway", &[]);
    let mut executor = d.start("executor", &[]);
    let sleeps: serde_json::Map<String, Value> =
        names.iter().map(|n| (n.to_string(), json!(2000))).collect();
    let id = start(&api, "chain", json!({ "sleep_ms": sleeps })).await;

    let running = |step: &'static str| {
        let api = &api;
        let id = &id;
        async move {
            poll_until(
                &format!("step {step} runs"),
                Duration::from_secs(120),
                Duration::from_millis(100),
                || async move {
                    let (_, v) = api.get(&format!("/api/v1/runs/{id}")).await;
                    if status(&v, step) == "running" {
                        Ok(())
                    } else {
                        Err(format!("{:#}", v["run"]["steps"]))
                    }
                },
            )
            .await
        }
    };
    running("s2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.processes[executor].kill9();
    executor = d.start("executor", &[]);
    running("s4").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.processes[gateway].kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    gateway = d.start("gateway", &[]);
    let run = finished(&api, &id, || d.all_logs()).await;
    assert_eq!(
        run["run"]["status"],
        "succeeded",
        "{run:#}\n{}",
        d.all_logs()
    );
    for name in names {
        let step_run = step_of(&run, name);
        assert_eq!(step_run["status"], "succeeded");
        assert_eq!(step_run["generation"], 0);
        let executions = api.executions(&format!("workflow.chain.{name}")).await;
        assert_eq!(
            executions.len(),
            1,
            "step {name} recorded twice: {executions:#?}"
        );
        assert_eq!(executions[0]["status"], "succeeded");
        assert_eq!(executions[0]["id"], step_run["executions"][0]);
    }
    let _ = (gateway, executor);
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}
