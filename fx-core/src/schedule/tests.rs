use chrono::{DateTime, Duration, Utc};

use super::*;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn every(seconds: u64) -> Schedule {
    schedule(|s| s.every_seconds = Some(seconds))
}

fn schedule(edit: impl FnOnce(&mut Schedule)) -> Schedule {
    let mut s: Schedule = serde_json::from_value(serde_json::json!({"name": "tick"})).unwrap();
    edit(&mut s);
    s
}

#[test]
fn exactly_one_of_cron_every_and_at_is_required() {
    let none = schedule(|_| {});
    assert!(none
        .validate()
        .unwrap_err()
        .message()
        .contains("exactly one"));
    let two = schedule(|s| {
        s.every_seconds = Some(5);
        s.cron = Some("* * * * *".into());
    });
    assert!(two
        .validate()
        .unwrap_err()
        .message()
        .contains("exactly one"));
    every(5).validate().unwrap();
}

#[test]
fn invalid_fields_are_named() {
    let e = schedule(|s| s.cron = Some("61 * * * *".into()))
        .validate()
        .unwrap_err();
    assert!(
        e.message().contains("cron \"61 * * * *\" is not valid"),
        "{e}"
    );
    let e = schedule(|s| s.cron = Some("* * *".into()))
        .validate()
        .unwrap_err();
    assert!(e.message().contains("has 3 fields"), "{e}");
    let e = schedule(|s| {
        s.every_seconds = Some(1);
        s.timezone = "Mars/Olympus".into();
    })
    .validate()
    .unwrap_err();
    assert!(e.message().contains("not an IANA time zone"), "{e}");
    assert!(every(0).validate().is_err());
    let e = schedule(|s| {
        s.every_seconds = Some(1);
        s.catch_up_limit = 0;
    })
    .validate()
    .unwrap_err();
    assert!(e.message().contains("catch_up_limit"), "{e}");
    let e = schedule(|s| {
        s.every_seconds = Some(1);
        s.data = serde_json::json!("x".repeat(70_000));
    })
    .validate()
    .unwrap_err();
    assert!(e.message().contains("data is"), "{e}");
    let e = schedule(|s| {
        s.every_seconds = Some(1);
        s.name = "Bad Name".into();
    })
    .validate()
    .unwrap_err();
    assert!(e.message().contains("schedule name"), "{e}");
}

#[test]
fn unknown_fields_are_refused() {
    let e = serde_json::from_value::<Schedule>(serde_json::json!({"name": "x", "evry": 1}));
    assert!(e.is_err());
}

#[test]
fn an_interval_ticks_at_multiples_of_its_period_since_the_epoch() {
    let s = every(60);
    assert_eq!(
        s.next_after(t("2026-12-03T10:15:42.5Z")),
        Some(t("2026-12-03T10:16:00Z"))
    );
    // Strictly after: an instant on a tick gives the next one.
    assert_eq!(
        s.next_after(t("2026-12-03T10:16:00Z")),
        Some(t("2026-12-03T10:17:00Z"))
    );
    assert_eq!(
        every(1).upcoming(t("2026-12-03T10:00:00.2Z"), 3),
        [
            t("2026-12-03T10:00:01Z"),
            t("2026-12-03T10:00:02Z"),
            t("2026-12-03T10:00:03Z")
        ]
    );
}

#[test]
fn cron_with_and_without_seconds_in_a_time_zone() {
    // 03:00 in Paris is 02:00 UTC in winter.
    let nightly = schedule(|s| {
        s.cron = Some("0 3 * * *".into());
        s.timezone = "Europe/Paris".into();
    });
    nightly.validate().unwrap();
    assert_eq!(
        nightly.next_after(t("2026-12-03T10:00:00Z")),
        Some(t("2026-12-04T02:00:00Z"))
    );
    let ten_seconds = schedule(|s| s.cron = Some("*/10 * * * * *".into()));
    assert_eq!(
        ten_seconds.upcoming(t("2026-12-03T10:00:05Z"), 2),
        [t("2026-12-03T10:00:10Z"), t("2026-12-03T10:00:20Z")]
    );
    let hourly = schedule(|s| s.cron = Some("@hourly".into()));
    hourly.validate().unwrap();
    assert_eq!(
        hourly.next_after(t("2026-12-03T10:00:05Z")),
        Some(t("2026-12-03T11:00:00Z"))
    );
}

#[test]
fn a_one_off_schedule_fires_once() {
    let s = schedule(|s| s.at = Some(t("2026-12-03T12:00:00Z")));
    assert_eq!(
        s.next_after(t("2026-12-03T11:00:00Z")),
        Some(t("2026-12-03T12:00:00Z"))
    );
    assert_eq!(s.next_after(t("2026-12-03T12:00:00Z")), None);
    let grace = Duration::seconds(5);
    assert_eq!(
        s.due(
            Some(t("2026-12-03T11:00:00Z")),
            t("2026-12-03T12:00:01Z"),
            grace,
            100
        ),
        [t("2026-12-03T12:00:00Z")]
    );
    assert!(s
        .due(
            Some(t("2026-12-03T12:00:00Z")),
            t("2026-12-03T12:00:09Z"),
            grace,
            100
        )
        .is_empty());
}

#[test]
fn on_time_ticks_fire_and_missed_ones_follow_the_policy() {
    let grace = Duration::seconds(2);
    let last = Some(t("2026-12-03T10:00:00Z"));
    let now = t("2026-12-03T10:00:10Z");
    // 10:00:01 … 10:00:10 are due; 10:00:08 … 10:00:10 are within the grace.
    let on_time = [
        t("2026-12-03T10:00:08Z"),
        t("2026-12-03T10:00:09Z"),
        t("2026-12-03T10:00:10Z"),
    ];
    assert_eq!(every(1).due(last, now, grace, 100), on_time);
    let once = schedule(|s| {
        s.every_seconds = Some(1);
        s.missed = Missed::Once;
    });
    let mut expected = vec![t("2026-12-03T10:00:07Z")];
    expected.extend(on_time);
    assert_eq!(once.due(last, now, grace, 100), expected);
    let catch_up = schedule(|s| {
        s.every_seconds = Some(1);
        s.missed = Missed::CatchUp;
        s.catch_up_limit = 3;
    });
    let mut expected = vec![
        t("2026-12-03T10:00:05Z"),
        t("2026-12-03T10:00:06Z"),
        t("2026-12-03T10:00:07Z"),
    ];
    expected.extend(on_time);
    assert_eq!(catch_up.due(last, now, grace, 100), expected);
}

#[test]
fn never_fired_owes_only_the_tick_within_the_grace() {
    let now = t("2026-12-03T10:00:10.5Z");
    assert_eq!(
        every(60).due(None, now, Duration::seconds(30), 100),
        [t("2026-12-03T10:00:00Z")]
    );
    assert!(every(60)
        .due(None, now, Duration::seconds(5), 100)
        .is_empty());
}

#[test]
fn a_paused_schedule_owes_nothing() {
    let s = schedule(|s| {
        s.every_seconds = Some(1);
        s.paused = true;
    });
    assert!(s
        .due(
            Some(t("2026-12-03T10:00:00Z")),
            t("2026-12-03T10:00:10Z"),
            Duration::seconds(30),
            100
        )
        .is_empty());
}

#[test]
fn a_year_of_downtime_costs_a_bounded_scan() {
    let s = schedule(|s| {
        s.every_seconds = Some(1);
        s.missed = Missed::CatchUp;
        s.catch_up_limit = 5;
    });
    let started = std::time::Instant::now();
    let due = s.due(
        Some(t("2025-12-03T10:00:00Z")),
        t("2026-12-03T10:00:00Z"),
        Duration::seconds(1),
        10_000,
    );
    assert_eq!(due.len(), 5 + 2);
    assert_eq!(due.last(), Some(&t("2026-12-03T10:00:00Z")));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Cron: the scan stops after the budget even if ticks remain.
    let cron = schedule(|s| {
        s.cron = Some("* * * * * *".into());
        s.missed = Missed::CatchUp;
    });
    let due = cron.due(
        Some(t("2025-12-03T10:00:00Z")),
        t("2026-12-03T10:00:00Z"),
        Duration::seconds(1),
        1_000,
    );
    assert_eq!(due.len(), 10);
}

#[test]
fn the_tick_event_names_the_schedule_and_the_instant() {
    use cloudevents::AttributesReader as _;
    let s = schedule(|s| {
        s.every_seconds = Some(1);
        s.data = serde_json::json!({"report": "daily"});
    });
    let at = t("2026-12-03T10:00:01Z");
    let event = s.tick_event(at).unwrap();
    assert_eq!(event.id(), "tick@2026-12-03T10:00:01Z");
    assert_eq!(event.source().to_string(), "/schedules/tick");
    assert_eq!(event.ty(), FIRED_TYPE);
    assert_eq!(event.time(), Some(&at));
    assert_eq!(
        crate::event::data_json(&event),
        Some(serde_json::json!({"report": "daily"}))
    );
    assert_eq!(s.tick_event(at).unwrap().id(), event.id());
}
