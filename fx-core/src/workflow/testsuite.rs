//! The conformance suite of the run ledger port ([`RunLedger`]), run by both state stores'
//! tests.
//!
//! Runs belong to workflows with a unique name and are started by events with a unique id, and
//! every check looks at its own runs only, so the suite also runs against a shared database.
//! [`RunLedger::unfinished_runs`] looks at every run, oldest first, so the suite works in a
//! time window of its own, long ago, and earlier for each later run ([`window`]): its
//! unfinished runs are the oldest there are.

// Test code in the library so that every backend can run it; a failed check panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};

use super::ledger::{RunLedger, RunQuery};
use super::run::{Run, RunId, RunStatus, RunSummary};
use super::Workflow;
use crate::error::ErrorKind;
use crate::event::new_json_event;
use crate::execution::ExecutionId;
use crate::testsupport::unique;

/// Runs every check against `ledger`.
pub async fn run(ledger: &dyn RunLedger) {
    let base = window();
    unfinished_runs_are_found_oldest_first(ledger, base).await;
    creating_twice_stores_once(ledger, base + minutes(2)).await;
    updates_compare_and_swap_on_the_version(ledger, base + minutes(4)).await;
    of_two_concurrent_updates_from_one_version_one_wins(ledger, base + minutes(6)).await;
    lists_are_newest_first_filtered_and_paged(ledger, base + minutes(8)).await;
    step_executions_lead_to_their_runs(ledger).await;
    a_run_of_a_thousand_steps_round_trips(ledger, base + minutes(10)).await;
}

/// The start of this run's half hour: before 2001-01-01 by a thousand times the time since the
/// epoch, modulo 900 years (so within 1101 to 2001, wrapping every 11 months; as
/// `crate::notify::testsuite` does, within years a run's JSON writes with four digits). A run
/// started a second later works 1,000 s earlier: runs started 2 s apart have disjoint windows,
/// and a later run's is the earlier one.
fn window() -> DateTime<Utc> {
    let anchor = DateTime::from_timestamp(978_307_200, 0).unwrap(); // 2001-01-01
    let span_ms = 900 * 365 * 86_400 * 1_000_i64;
    let back_ms = (Utc::now().timestamp_millis() * 1_000).rem_euclid(span_ms);
    anchor - Duration::milliseconds(back_ms)
}

fn minutes(n: i64) -> Duration {
    Duration::minutes(n)
}

fn seconds(n: i64) -> Duration {
    Duration::seconds(n)
}

/// A workflow named `name` of `steps` steps (`a` alone, or `s0`, `s1`…), each running
/// package `hello`.
fn definition(name: &str, steps: usize) -> Workflow {
    let steps: Vec<serde_json::Value> = match steps {
        1 => vec![serde_json::json!({"name": "a", "package": {"name": "hello"}})],
        n => (0..n)
            .map(|i| serde_json::json!({"name": format!("s{i}"), "package": {"name": "hello"}}))
            .collect(),
    };
    serde_json::from_value(serde_json::json!({"name": name, "steps": steps})).unwrap()
}

/// A new run of a one-step workflow `workflow`, started at `at` by an event of its own.
fn new_run(workflow: &str, at: DateTime<Utc>) -> Run {
    run_of(definition(workflow, 1), at)
}

fn run_of(definition: Workflow, at: DateTime<Utc>) -> Run {
    let event = new_json_event(
        unique("run"),
        "/workflow-suite",
        "com.example.run",
        serde_json::json!({"order": 42}),
    )
    .unwrap();
    Run::new(definition, 3, event, at)
}

/// `run` with status `status`, finished at `finished_at`.
fn with(mut run: Run, status: RunStatus, finished_at: Option<DateTime<Utc>>) -> Run {
    run.status = status;
    run.finished_at = finished_at;
    run
}

/// `run` as stored at `version`.
fn at_version(run: &Run, version: u64) -> Run {
    Run {
        version,
        ..run.clone()
    }
}

fn execution() -> ExecutionId {
    ExecutionId::derive("/workflow-suite", &unique("step"), "workflow-suite")
}

/// An id no run has.
fn unknown_run() -> RunId {
    RunId::for_trigger(&unique("nothing"), "/workflow-suite", "none")
}

async fn create(ledger: &dyn RunLedger, run: &Run) {
    assert!(
        ledger.create_run(run).await.unwrap(),
        "creating run {}",
        run.id
    );
}

async fn get(ledger: &dyn RunLedger, id: &RunId) -> Run {
    ledger
        .get_run(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("run {id} is not stored"))
}

/// The ids of `runs`, newest first: by `created_at` (to the microsecond, as stored), then id,
/// both descending.
fn newest_first<'a>(runs: impl IntoIterator<Item = &'a Run>) -> Vec<RunId> {
    let mut runs: Vec<&Run> = runs.into_iter().collect();
    runs.sort_by(|a, b| {
        (b.created_at.timestamp_micros(), &b.id).cmp(&(a.created_at.timestamp_micros(), &a.id))
    });
    runs.into_iter().map(|r| r.id.clone()).collect()
}

fn ids(page: &[RunSummary]) -> Vec<RunId> {
    page.iter().map(|s| s.id.clone()).collect()
}

/// Every page of `query` (from its cursor on), each at most its page size.
async fn every_page(ledger: &dyn RunLedger, mut query: RunQuery) -> Vec<RunSummary> {
    let mut all = Vec::new();
    for _ in 0..1000 {
        let page = ledger.list_runs(&query).await.unwrap();
        assert!(page.items.len() <= query.page_size() as usize);
        all.extend(page.items);
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return all,
        }
    }
    panic!("paging {query:?} does not end");
}

/// The unfinished runs among `mine`, as `unfinished_runs(limit)` gives them.
async fn unfinished_of(ledger: &dyn RunLedger, mine: &[&Run]) -> Vec<RunId> {
    let mine: BTreeSet<&RunId> = mine.iter().map(|r| &r.id).collect();
    ledger
        .unfinished_runs(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|id| mine.contains(id))
        .collect()
}

async fn unfinished_runs_are_found_oldest_first(ledger: &dyn RunLedger, t: DateTime<Utc>) {
    let workflow = unique("unfinished");
    let oldest = new_run(&workflow, t);
    let finished = with(
        new_run(&workflow, t + seconds(1)),
        RunStatus::Succeeded,
        Some(t + seconds(2)),
    );
    // Failed with steps still running: not finished. Two at one time: by id.
    let failing = with(new_run(&workflow, t + seconds(2)), RunStatus::Failed, None);
    let tied = new_run(&workflow, t + seconds(2));
    for run in [&tied, &finished, &oldest, &failing] {
        create(ledger, run).await;
    }
    let mine = [&oldest, &finished, &failing, &tied];
    let mut later = vec![failing.id.clone(), tied.id.clone()];
    later.sort();
    let expected: Vec<RunId> = [oldest.id.clone()]
        .into_iter()
        .chain(later.clone())
        .collect();
    assert_eq!(
        unfinished_of(ledger, &mine).await,
        expected,
        "the unfinished ones, oldest first, then by id"
    );
    // This run's window is the oldest there is: a limit takes its oldest ones.
    assert_eq!(ledger.unfinished_runs(2).await.unwrap(), expected[..2]);
    assert!(ledger.unfinished_runs(0).await.unwrap().is_empty());

    // Once finished, a run is not found any more.
    let done = with(
        get(ledger, &oldest.id).await,
        RunStatus::Succeeded,
        Some(t + seconds(3)),
    );
    assert!(ledger.update_run(&done).await.unwrap());
    assert_eq!(unfinished_of(ledger, &mine).await, later);
    assert_eq!(ledger.unfinished_runs(1).await.unwrap(), later[..1]);
    // Leave none unfinished.
    for id in &later {
        let done = with(
            get(ledger, id).await,
            RunStatus::Failed,
            Some(t + seconds(4)),
        );
        assert!(ledger.update_run(&done).await.unwrap());
    }
    assert!(unfinished_of(ledger, &mine).await.is_empty());
}

async fn creating_twice_stores_once(ledger: &dyn RunLedger, t: DateTime<Utc>) {
    let workflow = unique("create");
    // The version given is ignored: a new run is stored at version 1.
    let run = at_version(&new_run(&workflow, t), 9);
    assert!(ledger.create_run(&run).await.unwrap());
    assert_eq!(get(ledger, &run.id).await, at_version(&run, 1));
    let mut again = with(run.clone(), RunStatus::Cancelled, Some(t + seconds(1)));
    again.updated_at = t + seconds(1);
    assert!(
        !ledger.create_run(&again).await.unwrap(),
        "creating a run a second time stores nothing"
    );
    assert_eq!(
        get(ledger, &run.id).await,
        at_version(&run, 1),
        "the first one is unchanged"
    );
    assert_eq!(ledger.get_run(&unknown_run()).await.unwrap(), None);
    let listed = ledger
        .list_runs(&RunQuery {
            workflow: Some(workflow),
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.items, vec![RunSummary::from(&run)]);
}

async fn updates_compare_and_swap_on_the_version(ledger: &dyn RunLedger, t: DateTime<Utc>) {
    let workflow = unique("update");
    let run = new_run(&workflow, t);
    create(ledger, &run).await;
    let read = get(ledger, &run.id).await;
    assert_eq!(read.version, 1);

    // From the version read: stored, one version up.
    let mut started = read.clone();
    started.started("a", vec![execution()], t + seconds(1));
    assert!(ledger.update_run(&started).await.unwrap());
    assert_eq!(get(ledger, &run.id).await, at_version(&started, 2));

    // From a stale version: nothing changes.
    let mut stale = read.clone();
    stale.cancel(t + seconds(2)).unwrap();
    assert!(
        !ledger.update_run(&stale).await.unwrap(),
        "an update from a version another update moved on from is refused"
    );
    assert_eq!(get(ledger, &run.id).await, at_version(&started, 2));
    let ahead = at_version(&started, 3);
    assert!(!ledger.update_run(&ahead).await.unwrap());
    let far = at_version(&started, u64::MAX);
    assert!(!ledger.update_run(&far).await.unwrap());
    assert_eq!(get(ledger, &run.id).await, at_version(&started, 2));

    // The list shows what the last update stored: status and finish.
    let mut finished = get(ledger, &run.id).await;
    finished.status = RunStatus::Succeeded;
    finished.finished_at = Some(t + seconds(3));
    finished.updated_at = t + seconds(3);
    assert!(ledger.update_run(&finished).await.unwrap());
    assert_eq!(get(ledger, &run.id).await, at_version(&finished, 3));
    for (status, listed) in [
        (None, vec![RunSummary::from(&finished)]),
        (
            Some(RunStatus::Succeeded),
            vec![RunSummary::from(&finished)],
        ),
        (Some(RunStatus::Running), vec![]),
    ] {
        let page = ledger
            .list_runs(&RunQuery {
                workflow: Some(workflow.clone()),
                status,
                ..RunQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.items, listed, "status {status:?}");
    }

    // A run never created is never updated (nor created by the update).
    let missing = new_run(&workflow, t);
    assert!(!ledger.update_run(&at_version(&missing, 1)).await.unwrap());
    assert!(!ledger.update_run(&missing).await.unwrap());
    assert_eq!(ledger.get_run(&missing.id).await.unwrap(), None);
}

async fn of_two_concurrent_updates_from_one_version_one_wins(
    ledger: &dyn RunLedger,
    t: DateTime<Utc>,
) {
    let run = new_run(&unique("race"), t);
    create(ledger, &run).await;
    for round in 0..20_i64 {
        let read = get(ledger, &run.id).await;
        let (mut left, mut right) = (read.clone(), read.clone());
        left.updated_at = t + Duration::milliseconds(2 * round + 1);
        left.steps[0].reason = Some(format!("left {round}"));
        right.updated_at = t + Duration::milliseconds(2 * round + 2);
        right.steps[0].reason = Some(format!("right {round}"));
        let (l, r) = tokio::join!(ledger.update_run(&left), ledger.update_run(&right));
        let (l, r) = (l.unwrap(), r.unwrap());
        assert!(
            l != r,
            "round {round}: exactly one update wins, not {l} and {r}"
        );
        let winner = if l { &left } else { &right };
        assert_eq!(
            get(ledger, &run.id).await,
            at_version(winner, read.version + 1),
            "round {round}: the winner's run, one version up"
        );
    }
}

async fn lists_are_newest_first_filtered_and_paged(ledger: &dyn RunLedger, t: DateTime<Utc>) {
    let (workflow, other) = (unique("list"), unique("list-other"));
    let runs = vec![
        new_run(&workflow, t),
        with(
            new_run(&workflow, t + seconds(1)),
            RunStatus::Failed,
            Some(t + seconds(9)),
        ),
        with(
            new_run(&other, t + seconds(2)),
            RunStatus::Failed,
            Some(t + seconds(9)),
        ),
        with(
            new_run(&workflow, t + seconds(3)),
            RunStatus::Succeeded,
            Some(t + seconds(9)),
        ),
        // At the same time as the one before: the id breaks the tie.
        with(
            new_run(&workflow, t + seconds(3)),
            RunStatus::Failed,
            Some(t + seconds(9)),
        ),
        new_run(&workflow, t + seconds(4)),
        // Finer than a microsecond: listed by the microsecond it is stored at.
        with(
            new_run(&workflow, t + seconds(5) + Duration::nanoseconds(999)),
            RunStatus::Cancelled,
            None,
        ),
    ];
    // Created out of order.
    for i in [3, 0, 6, 2, 5, 1, 4] {
        create(ledger, &runs[i]).await;
    }
    let of_workflow: Vec<&Run> = runs.iter().filter(|r| r.workflow == workflow).collect();
    let failed: Vec<&Run> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .collect();
    let window = |since: i64, until: i64| RunQuery {
        since: Some(t + seconds(since)),
        until: Some(t + seconds(until)),
        ..RunQuery::default()
    };

    // A whole list: newest first, its summaries those of the runs.
    let page = ledger
        .list_runs(&RunQuery {
            workflow: Some(workflow.clone()),
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.next_cursor, None);
    let expected: Vec<RunId> = newest_first(of_workflow.iter().copied());
    assert_eq!(ids(&page.items), expected);
    for summary in &page.items {
        let run = runs.iter().find(|r| r.id == summary.id).unwrap();
        assert_eq!(summary, &RunSummary::from(run));
    }

    // Filters.
    for (what, query, expected) in [
        (
            "a workflow's failed ones",
            RunQuery {
                workflow: Some(workflow.clone()),
                status: Some(RunStatus::Failed),
                ..RunQuery::default()
            },
            newest_first(
                of_workflow
                    .iter()
                    .copied()
                    .filter(|r| r.status == RunStatus::Failed),
            ),
        ),
        (
            "a workflow's cancelled ones",
            RunQuery {
                workflow: Some(workflow.clone()),
                status: Some(RunStatus::Cancelled),
                ..RunQuery::default()
            },
            vec![runs[6].id.clone()],
        ),
        (
            "the other workflow's",
            RunQuery {
                workflow: Some(other.clone()),
                ..RunQuery::default()
            },
            vec![runs[2].id.clone()],
        ),
        (
            "the failed ones of the window, whatever the workflow",
            RunQuery {
                status: Some(RunStatus::Failed),
                ..window(0, 6)
            },
            newest_first(failed.iter().copied()),
        ),
        (
            "those started from 1 s (included) to 3 s (excluded)",
            window(1, 3),
            vec![runs[2].id.clone(), runs[1].id.clone()],
        ),
        (
            "those of a workflow started from 4 s",
            RunQuery {
                workflow: Some(workflow.clone()),
                ..window(4, 60)
            },
            vec![runs[6].id.clone(), runs[5].id.clone()],
        ),
        (
            "none of a workflow no run has",
            RunQuery {
                workflow: Some(unique("list-none")),
                ..RunQuery::default()
            },
            vec![],
        ),
    ] {
        let page = ledger.list_runs(&query).await.unwrap();
        assert_eq!(ids(&page.items), expected, "{what}");
        assert_eq!(page.next_cursor, None, "{what}");
    }

    // Pages: each run once, in order, whatever the page size.
    for size in [1, 2, 3, 6, 7] {
        let all = every_page(
            ledger,
            RunQuery {
                workflow: Some(workflow.clone()),
                limit: Some(size),
                ..RunQuery::default()
            },
        )
        .await;
        assert_eq!(ids(&all), expected, "pages of {size}");
        let all = every_page(
            ledger,
            RunQuery {
                limit: Some(size),
                ..window(0, 6)
            },
        )
        .await;
        assert_eq!(
            ids(&all),
            newest_first(&runs),
            "pages of {size} of the window"
        );
    }
    let first = ledger
        .list_runs(&RunQuery {
            workflow: Some(workflow.clone()),
            limit: Some(2),
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&first.items), expected[..2]);
    assert!(
        first.next_cursor.is_some(),
        "a cursor when more runs follow"
    );

    for cursor in ["nope", "12", "x:y", "12:0123"] {
        let err = ledger
            .list_runs(&RunQuery {
                cursor: Some(cursor.into()),
                ..RunQuery::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Invalid,
            "cursor {cursor:?}: {}",
            err.chain()
        );
    }
}

async fn step_executions_lead_to_their_runs(ledger: &dyn RunLedger) {
    let workflow = unique("index");
    let run = |n: &str| RunId::for_trigger(&workflow, "/workflow-suite", n);
    let (first, second, big) = (run("1"), run("2"), run("3"));
    let (a, b, c, unknown) = (execution(), execution(), execution(), execution());
    let set = |ids: Vec<RunId>| {
        let set: BTreeSet<RunId> = ids.iter().cloned().collect();
        assert_eq!(set.len(), ids.len(), "each run once: {ids:?}");
        set
    };

    ledger
        .index_step_executions(&first, &[a.clone(), b.clone()])
        .await
        .unwrap();
    ledger
        .index_step_executions(&second, std::slice::from_ref(&c))
        .await
        .unwrap();
    // Again, and nothing: fine.
    ledger
        .index_step_executions(&first, &[a.clone(), b.clone()])
        .await
        .unwrap();
    ledger.index_step_executions(&first, &[]).await.unwrap();

    assert_eq!(
        set(ledger
            .runs_of(&[a.clone(), b.clone(), c.clone(), unknown.clone()])
            .await
            .unwrap()),
        BTreeSet::from([first.clone(), second.clone()])
    );
    assert_eq!(
        ledger
            .runs_of(&[b.clone(), a.clone(), a.clone()])
            .await
            .unwrap(),
        vec![first.clone()]
    );
    assert_eq!(
        ledger.runs_of(std::slice::from_ref(&c)).await.unwrap(),
        vec![second.clone()]
    );
    assert!(ledger
        .runs_of(std::slice::from_ref(&unknown))
        .await
        .unwrap()
        .is_empty());
    assert!(ledger.runs_of(&[]).await.unwrap().is_empty());

    // An execution indexed already stays with its run.
    ledger
        .index_step_executions(&second, std::slice::from_ref(&a))
        .await
        .unwrap();
    assert_eq!(
        ledger.runs_of(std::slice::from_ref(&a)).await.unwrap(),
        vec![first.clone()]
    );

    // A thousand in one batch (one twice), found in one call.
    let mut many: Vec<ExecutionId> = (0..1000).map(|_| execution()).collect();
    many.push(many[0].clone());
    ledger.index_step_executions(&big, &many).await.unwrap();
    many.push(c.clone());
    assert_eq!(
        set(ledger.runs_of(&many).await.unwrap()),
        BTreeSet::from([second.clone(), big.clone()])
    );
    assert_eq!(
        ledger.runs_of(&many[500..501]).await.unwrap(),
        vec![big.clone()]
    );
}

async fn a_run_of_a_thousand_steps_round_trips(ledger: &dyn RunLedger, t: DateTime<Utc>) {
    let workflow = unique("big");
    let mut run = run_of(definition(&workflow, super::MAX_STEPS), t);
    assert_eq!(run.steps.len(), 1000);
    for i in 0..1000 {
        run.started(&format!("s{i}"), vec![execution()], t + seconds(1));
    }
    create(ledger, &run).await;
    let stored = get(ledger, &run.id).await;
    assert_eq!(stored, at_version(&run, 1));
    let query = RunQuery {
        workflow: Some(workflow.clone()),
        ..RunQuery::default()
    };
    let listed = ledger.list_runs(&query).await.unwrap();
    assert_eq!(listed.items, vec![RunSummary::from(&run)]);
    assert_eq!(listed.items[0].steps.get("running"), Some(&1000));

    let mut done = stored;
    let ended = done
        .running_executions()
        .into_iter()
        .map(|id| (id, super::run::Ended::Succeeded))
        .collect();
    let (ready, changed) = done.settle(&ended, t + seconds(2));
    assert!(ready.is_empty() && changed);
    assert_eq!(done.status, RunStatus::Succeeded);
    assert!(ledger.update_run(&done).await.unwrap());
    assert_eq!(get(ledger, &run.id).await, at_version(&done, 2));
    let listed = ledger.list_runs(&query).await.unwrap();
    assert_eq!(listed.items[0].steps.get("succeeded"), Some(&1000));
    assert_eq!(listed.items[0].finished_at, Some(t + seconds(2)));
}
