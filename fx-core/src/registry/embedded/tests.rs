use std::time::Instant;

use super::*;
use crate::handler::{Filter, PackageRef};
use crate::registry::{HandlerRegistry, HandlerTable};
use crate::testsupport::HandlerBuilder;

fn handler(name: &str) -> Handler {
    HandlerBuilder::new(name)
        .event_type("com.example.hello")
        .package("hello")
        .build()
}

fn file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("handlers.json")
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FileRegistry::open(&file(&dir)).await.unwrap();
    crate::registry::testsuite::run(&registry).await;
}

#[tokio::test]
async fn passes_the_schedule_conformance_suite_in_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schedules.json");
    let registry: FileRegistry<crate::schedule::Schedule> =
        FileRegistry::open_entries(&path).await.unwrap();
    crate::registry::testsuite::run_schedules(&registry).await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"schedules\""), "{text}");
}

#[tokio::test]
async fn passes_the_hook_conformance_suite_in_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hooks.json");
    let registry: FileRegistry<crate::hook::Hook> =
        FileRegistry::open_entries(&path).await.unwrap();
    crate::registry::testsuite::run_hooks(&registry).await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"hooks\""), "{text}");
}

#[tokio::test]
async fn a_missing_file_is_an_empty_registry() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FileRegistry::open(&dir.path().join("sub/handlers.json"))
        .await
        .unwrap();
    assert_eq!(registry.table().await.unwrap(), HandlerTable::default());
    registry.put(&handler("a"), Expect::Absent).await.unwrap();
    assert!(dir.path().join("sub/handlers.json").exists());
}

#[tokio::test]
async fn a_corrupt_file_is_refused_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(file(&dir), "{ not json").unwrap();
    let err = FileRegistry::open(&file(&dir)).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(
        err.message().contains(&file(&dir).display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn watch_wakes_on_a_put_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(FileRegistry::open(&file(&dir)).await.unwrap());
    let watcher = tokio::spawn({
        let registry = Arc::clone(&registry);
        async move {
            let table = registry.watch(0, Duration::from_secs(30)).await.unwrap();
            (table, Instant::now())
        }
    });
    tokio::task::yield_now().await;
    let revision = registry.put(&handler("a"), Expect::Absent).await.unwrap();
    let put_done = Instant::now();
    let (table, woke) = watcher.await.unwrap();
    assert_eq!(table.revision, revision);
    assert_eq!(table.handlers.len(), 1);
    assert!(
        // Not left for the 30 s wait to run out.
        woke <= put_done + POLL_INTERVAL * 2,
        "watch woke late"
    );
}

#[tokio::test]
async fn watch_sees_an_outside_edit_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FileRegistry::open(&file(&dir)).await.unwrap();
    let first = registry.put(&handler("a"), Expect::Absent).await.unwrap();
    let mut text: Value = serde_json::from_slice(&std::fs::read(file(&dir)).unwrap()).unwrap();
    text["handlers"]["b"] = json!({ "handler": handler("b") });
    text["handlers"]["a"]["handler"]["description"] = json!("edited by hand");
    std::fs::write(file(&dir), serde_json::to_vec_pretty(&text).unwrap()).unwrap();

    let started = Instant::now();
    let table = registry.watch(first, Duration::from_secs(5)).await.unwrap();
    assert!(started.elapsed() < POLL_INTERVAL * 12, "edit noticed late");
    assert!(table.revision > first);
    let names: Vec<_> = table
        .handlers
        .iter()
        .map(|h| h.handler.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let a = registry.get("a").await.unwrap().unwrap();
    assert_eq!(a.handler.description, "edited by hand");
    assert_eq!(
        a.revision, table.revision,
        "an edited entry gets a new revision"
    );
    let err = registry
        .put(&handler("a"), Expect::Revision(first))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "the edit made revision {first} stale"
    );
}

#[tokio::test]
async fn touching_the_file_without_changes_keeps_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FileRegistry::open(&file(&dir)).await.unwrap();
    let revision = registry.put(&handler("a"), Expect::Absent).await.unwrap();
    let bytes = std::fs::read(file(&dir)).unwrap();
    let mut reformatted: Value = serde_json::from_slice(&bytes).unwrap();
    reformatted["note"] = json!("unknown top-level fields are ignored");
    std::fs::write(file(&dir), serde_json::to_vec(&reformatted).unwrap()).unwrap();
    let table = registry
        .watch(revision, Duration::from_millis(700))
        .await
        .unwrap();
    assert_eq!(table.revision, revision);
}

#[tokio::test]
async fn hand_broken_entries_are_listed_as_invalid_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let document = json!({
        "revision": 7,
        "handlers": {
            "good": { "revision": 3, "handler": handler("good") },
            "unknown-field": { "revision": 4, "handler": { "name": "unknown-field", "filter": {"all": []}, "package": {"name": "p"}, "colour": "red" } },
            "mismatch": { "handler": handler("other") },
            "not-an-object": 42,
            "bad-limits": { "handler": { "name": "bad-limits", "filter": {"all": []}, "package": {"name": "p"}, "limits": {"memory_mb": 999999} } },
        }
    });
    std::fs::write(file(&dir), serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    let registry = FileRegistry::open(&file(&dir)).await.unwrap();
    let table = registry.table().await.unwrap();
    assert_eq!(table.revision, 7);
    assert_eq!(table.handlers.len(), 1);
    assert_eq!(table.handlers[0].revision, 3);
    let reasons: BTreeMap<_, _> = table
        .invalid
        .iter()
        .map(|i| (i.name.as_str(), i.reason.as_str()))
        .collect();
    assert!(reasons["unknown-field"].contains("colour"), "{reasons:?}");
    assert!(
        reasons["mismatch"].contains("does not match"),
        "{reasons:?}"
    );
    assert!(
        reasons["not-an-object"].contains("not a json object"),
        "{reasons:?}"
    );
    assert!(reasons["bad-limits"].contains("memory_mb"), "{reasons:?}");

    // Writing another handler keeps the broken entries for the user to fix.
    registry.put(&handler("new"), Expect::Absent).await.unwrap();
    drop(registry);
    let reopened = FileRegistry::open(&file(&dir)).await.unwrap();
    let table = reopened.table().await.unwrap();
    assert_eq!(table.handlers.len(), 2);
    assert_eq!(table.invalid.len(), 4);
    // A broken entry still occupies its name.
    let err = reopened
        .put(&handler("mismatch"), Expect::Absent)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    reopened.delete("mismatch", Expect::Any).await.unwrap();
}

#[tokio::test]
async fn a_file_broken_while_running_keeps_the_last_handlers_and_blocks_writes() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FileRegistry::open(&file(&dir)).await.unwrap();
    let revision = registry.put(&handler("a"), Expect::Absent).await.unwrap();
    std::fs::write(file(&dir), "{ half written").unwrap();
    let err = registry
        .put(&handler("b"), Expect::Absent)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(registry.table().await.unwrap().revision, revision);
    assert_eq!(
        std::fs::read_to_string(file(&dir)).unwrap(),
        "{ half written"
    );
}

#[tokio::test]
async fn handlers_and_revisions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FileRegistry::open(&file(&dir)).await.unwrap();
    registry.put(&handler("a"), Expect::Absent).await.unwrap();
    let mut b = handler("b");
    b.filter = Filter::type_is("com.example.other");
    b.package = PackageRef {
        name: "other".into(),
        version: "1.0.0".into(),
    };
    let rb = registry.put(&b, Expect::Absent).await.unwrap();
    let before = registry.table().await.unwrap();
    drop(registry);
    let reopened = FileRegistry::open(&file(&dir)).await.unwrap();
    assert_eq!(reopened.table().await.unwrap(), before);
    assert_eq!(reopened.get("b").await.unwrap().unwrap().handler, b);
    assert!(reopened.put(&handler("c"), Expect::Absent).await.unwrap() > rb);
}
