use super::*;
use crate::workflow::Workflow;

fn definition(policy: &str, steps: serde_json::Value) -> Workflow {
    let w: Workflow = serde_json::from_value(serde_json::json!({
        "name": "flow", "on_failure": policy, "steps": steps,
    }))
    .unwrap();
    w.validate().unwrap();
    w
}

fn step(name: &str, after: &[(&str, &str)]) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "package": {"name": "hello"},
        "after": after.iter().map(|(s, on)| serde_json::json!({"step": s, "on": on})).collect::<Vec<_>>(),
    })
}

fn run(w: Workflow) -> Run {
    let trigger =
        crate::event::new_json_event("t-1", "/test", "com.example.go", serde_json::json!({}))
            .unwrap();
    Run::new(w, 1, trigger, Utc::now())
}

fn exec(name: &str) -> ExecutionId {
    ExecutionId::derive("test", name, "h")
}

/// Starts every ready step with one execution named after it.
fn start_ready(run: &mut Run, ended: &HashMap<ExecutionId, Ended>) -> Vec<String> {
    let (ready, _) = run.settle(ended, Utc::now());
    for name in &ready {
        run.started(name, vec![exec(name)], Utc::now());
    }
    ready
}

fn status(run: &Run, name: &str) -> StepStatus {
    run.step(name).unwrap().status
}

fn diamond(policy: &str) -> Run {
    run(definition(
        policy,
        serde_json::json!([
            step("a", &[]),
            step("b", &[("a", "success")]),
            step("c", &[("a", "success")]),
            step("d", &[("b", "success"), ("c", "success")]),
        ]),
    ))
}

#[test]
fn a_diamond_starts_b_and_c_together_and_d_after_both() {
    let mut r = diamond("stop");
    let mut ended = HashMap::new();
    assert_eq!(start_ready(&mut r, &ended), vec!["a"]);
    assert!(start_ready(&mut r, &ended).is_empty(), "a still runs");
    ended.insert(exec("a"), Ended::Succeeded);
    assert_eq!(start_ready(&mut r, &ended), vec!["b", "c"]);
    ended.insert(exec("b"), Ended::Succeeded);
    assert!(start_ready(&mut r, &ended).is_empty(), "d waits for c");
    ended.insert(exec("c"), Ended::Succeeded);
    assert_eq!(start_ready(&mut r, &ended), vec!["d"]);
    assert_eq!(r.status, RunStatus::Running);
    ended.insert(exec("d"), Ended::Succeeded);
    start_ready(&mut r, &ended);
    assert_eq!(r.status, RunStatus::Succeeded);
    assert!(r.finished_at.is_some());
}

#[test]
fn a_step_result_is_recorded_once() {
    let mut r = diamond("stop");
    let mut ended = HashMap::new();
    start_ready(&mut r, &ended);
    ended.insert(exec("a"), Ended::Succeeded);
    start_ready(&mut r, &ended);
    let recorded = r.step("a").unwrap().finished_at;
    // The same end seen again (a redelivered state event) changes nothing of a.
    std::thread::sleep(std::time::Duration::from_millis(2));
    let (_, changed) = r.settle(&ended, Utc::now());
    assert!(!changed);
    assert_eq!(r.step("a").unwrap().finished_at, recorded);
    // Nor does a different end reported later.
    ended.insert(exec("a"), Ended::Failed("late".into()));
    r.settle(&ended, Utc::now());
    assert_eq!(status(&r, "a"), StepStatus::Succeeded);
}

#[test]
fn stop_policy_cancels_what_has_not_started() {
    let mut r = run(definition(
        "stop",
        serde_json::json!([
            step("a", &[]),
            step("b", &[]),
            step("a2", &[("a", "success")]),
            step("b2", &[("b", "success")]),
        ]),
    ));
    let mut ended = HashMap::new();
    assert_eq!(start_ready(&mut r, &ended), vec!["a", "b"]);
    ended.insert(exec("a"), Ended::Failed("boom".into()));
    assert!(start_ready(&mut r, &ended).is_empty());
    assert_eq!(status(&r, "a2"), StepStatus::Cancelled);
    assert_eq!(status(&r, "b2"), StepStatus::Cancelled);
    assert_eq!(status(&r, "b"), StepStatus::Running, "running ones finish");
    assert_eq!(r.status, RunStatus::Running);
    ended.insert(exec("b"), Ended::Succeeded);
    start_ready(&mut r, &ended);
    assert_eq!(status(&r, "b2"), StepStatus::Cancelled);
    assert_eq!(r.status, RunStatus::Failed);
    assert!(r
        .step("b2")
        .unwrap()
        .reason
        .as_ref()
        .unwrap()
        .contains("a failed"));
}

#[test]
fn continue_policy_lets_independent_branches_finish() {
    let mut r = run(definition(
        "continue",
        serde_json::json!([
            step("a", &[]),
            step("b", &[]),
            step("a2", &[("a", "success")]),
            step("a3", &[("a2", "success")]),
            step("b2", &[("b", "success")]),
        ]),
    ));
    let mut ended = HashMap::new();
    start_ready(&mut r, &ended);
    ended.insert(exec("a"), Ended::Failed("boom".into()));
    ended.insert(exec("b"), Ended::Succeeded);
    assert_eq!(start_ready(&mut r, &ended), vec!["b2"]);
    assert_eq!(status(&r, "a2"), StepStatus::Skipped);
    assert_eq!(status(&r, "a3"), StepStatus::Skipped, "skips cascade");
    ended.insert(exec("b2"), Ended::Succeeded);
    start_ready(&mut r, &ended);
    assert_eq!(status(&r, "b2"), StepStatus::Succeeded);
    assert_eq!(r.status, RunStatus::Failed);
}

#[test]
fn edge_conditions_pick_the_branch() {
    let mut r = run(definition(
        "stop",
        serde_json::json!([
            step("a", &[]),
            step("on-ok", &[("a", "success")]),
            step("on-error", &[("a", "failure")]),
            step("cleanup", &[("a", "always")]),
        ]),
    ));
    let mut ended = HashMap::new();
    start_ready(&mut r, &ended);
    ended.insert(exec("a"), Ended::Failed("boom".into()));
    let mut ready = start_ready(&mut r, &ended);
    ready.sort();
    assert_eq!(ready, vec!["cleanup", "on-error"]);
    assert_eq!(status(&r, "on-ok"), StepStatus::Skipped);
    ended.insert(exec("on-error"), Ended::Succeeded);
    ended.insert(exec("cleanup"), Ended::Succeeded);
    start_ready(&mut r, &ended);
    // The failure was handled by an edge: the run succeeded.
    assert_eq!(r.status, RunStatus::Succeeded);
}

#[test]
fn a_map_step_fails_naming_the_item() {
    let mut r = run(definition("stop", serde_json::json!([step("m", &[])])));
    let (ready, _) = r.settle(&HashMap::new(), Utc::now());
    assert_eq!(ready, vec!["m"]);
    let items: Vec<ExecutionId> = (0..3).map(|i| exec(&format!("m{i}"))).collect();
    r.started("m", items.clone(), Utc::now());
    let mut ended = HashMap::new();
    ended.insert(items[0].clone(), Ended::Succeeded);
    ended.insert(items[2].clone(), Ended::Failed("bad".into()));
    r.settle(&ended, Utc::now());
    assert_eq!(
        status(&r, "m"),
        StepStatus::Running,
        "joins once all items end"
    );
    ended.insert(items[1].clone(), Ended::Succeeded);
    r.settle(&ended, Utc::now());
    assert_eq!(status(&r, "m"), StepStatus::Failed);
    assert_eq!(r.step("m").unwrap().reason.as_deref(), Some("item 2: bad"));
}

#[test]
fn a_map_over_nothing_succeeds_at_once() {
    let mut r = run(definition(
        "stop",
        serde_json::json!([step("m", &[]), step("n", &[("m", "success")])]),
    ));
    let (ready, _) = r.settle(&HashMap::new(), Utc::now());
    r.started(&ready[0], vec![], Utc::now());
    assert_eq!(status(&r, "m"), StepStatus::Succeeded);
    assert_eq!(start_ready(&mut r, &HashMap::new()), vec!["n"]);
}

#[test]
fn cancel_stops_new_steps_and_waits_for_running_ones() {
    let mut r = diamond("stop");
    let mut ended = HashMap::new();
    start_ready(&mut r, &ended);
    r.cancel(Utc::now()).unwrap();
    assert!(r.cancel(Utc::now()).is_err(), "only a running run");
    ended.insert(exec("a"), Ended::Succeeded);
    assert!(start_ready(&mut r, &ended).is_empty());
    assert_eq!(
        status(&r, "a"),
        StepStatus::Succeeded,
        "the running step is recorded"
    );
    assert_eq!(status(&r, "b"), StepStatus::Cancelled);
    assert_eq!(r.status, RunStatus::Cancelled);
    assert!(r.finished_at.is_some());
}

#[test]
fn redrive_runs_only_what_did_not_succeed_in_a_new_generation() {
    let mut r = diamond("stop");
    let mut ended = HashMap::new();
    assert!(
        r.redrive(Utc::now()).is_err(),
        "a running run cannot be re-driven"
    );
    start_ready(&mut r, &ended);
    ended.insert(exec("a"), Ended::Succeeded);
    start_ready(&mut r, &ended);
    ended.insert(exec("b"), Ended::Succeeded);
    ended.insert(exec("c"), Ended::Failed("boom".into()));
    start_ready(&mut r, &ended);
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(status(&r, "d"), StepStatus::Cancelled);
    r.redrive(Utc::now()).unwrap();
    assert_eq!(r.generation, 1);
    assert_eq!(status(&r, "a"), StepStatus::Succeeded);
    assert_eq!(status(&r, "b"), StepStatus::Succeeded);
    assert_eq!(status(&r, "c"), StepStatus::Pending);
    let (ready, _) = r.settle(&HashMap::new(), Utc::now());
    assert_eq!(ready, vec!["c"]);
    r.started("c", vec![exec("c-again")], Utc::now());
    assert_eq!(r.step("c").unwrap().generation, 1);
    let mut ended = HashMap::new();
    ended.insert(exec("c-again"), Ended::Succeeded);
    assert_eq!(start_ready(&mut r, &ended), vec!["d"]);
}

#[test]
fn a_step_that_cannot_start_fails() {
    let mut r = diamond("continue");
    let (ready, _) = r.settle(&HashMap::new(), Utc::now());
    r.not_started(
        &ready[0],
        "package hello@latest does not exist".into(),
        Utc::now(),
    );
    r.settle(&HashMap::new(), Utc::now());
    assert_eq!(status(&r, "a"), StepStatus::Failed);
    assert_eq!(status(&r, "d"), StepStatus::Skipped);
    assert_eq!(r.status, RunStatus::Failed);
}

#[test]
fn run_ids_come_from_the_trigger() {
    let a = RunId::for_trigger("flow", "/src", "1");
    assert_eq!(a, RunId::for_trigger("flow", "/src", "1"));
    assert_ne!(a, RunId::for_trigger("other", "/src", "1"));
    assert_eq!(RunId::parse(a.as_str()).unwrap(), a);
    assert!(RunId::parse("nope").is_err());
    assert_eq!(RunStatus::parse("failed").unwrap(), RunStatus::Failed);
    assert!(RunStatus::parse("x")
        .unwrap_err()
        .message()
        .contains("running"));
}

#[test]
fn steps_skipped_or_cancelled_after_a_redrive_carry_its_generation() {
    let mut r = diamond("stop");
    let mut ended = HashMap::new();
    start_ready(&mut r, &ended);
    ended.insert(exec("a"), Ended::Failed("boom".into()));
    start_ready(&mut r, &ended);
    assert_eq!(r.status, RunStatus::Failed);
    r.redrive(Utc::now()).unwrap();
    r.settle(&HashMap::new(), Utc::now());
    r.started("a", vec![exec("a-again")], Utc::now());
    let mut ended = HashMap::new();
    ended.insert(exec("a-again"), Ended::Failed("boom again".into()));
    r.settle(&ended, Utc::now());
    for name in ["a", "b", "c", "d"] {
        assert_eq!(r.step(name).unwrap().generation, 1, "{name}");
    }
    assert_eq!(status(&r, "b"), StepStatus::Cancelled);
}
