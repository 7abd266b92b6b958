//! Unit tests of notification rules.

use super::*;

fn rule(json: serde_json::Value) -> Rule {
    let rule: Rule = serde_json::from_value(json).unwrap();
    rule.validate().unwrap();
    rule
}

#[test]
fn a_rule_wants_its_handlers_and_outcomes() {
    let r = rule(serde_json::json!({
        "name": "oncall",
        "handlers": ["payments", "orders"],
        "on": ["failed", "dead_lettered"],
        "target": {"kind": "webhook", "url": "https://alerts.example.com/hook", "secret": "alerts"},
    }));
    assert!(r.wants("payments", Outcome::Failed));
    assert!(r.wants("orders", Outcome::DeadLettered));
    assert!(!r.wants("payments", Outcome::Succeeded));
    assert!(!r.wants("other", Outcome::Failed));
    assert_eq!(r.max_attempts, 5);
    let all = rule(serde_json::json!({
        "name": "audit",
        "handlers": ["*"],
        "on": ["succeeded"],
        "target": {"kind": "cloudevent", "url": "http://sink.local/"},
    }));
    assert!(all.wants("anything", Outcome::Succeeded));
    let mut off = all.clone();
    off.enabled = false;
    assert!(!off.wants("anything", Outcome::Succeeded));
}

#[test]
fn validation_names_the_field() {
    let base = serde_json::json!({
        "name": "r",
        "handlers": ["*"],
        "on": ["failed"],
        "target": {"kind": "webhook", "url": "https://x.example/"},
    });
    let cases = [
        ("/handlers", serde_json::json!([]), "handlers"),
        ("/handlers", serde_json::json!(["Bad Name"]), "handlers"),
        ("/on", serde_json::json!([]), "on:"),
        (
            "/target",
            serde_json::json!({"kind": "webhook", "url": "ftp://x"}),
            "target.url",
        ),
        (
            "/target",
            serde_json::json!({"kind": "webhook", "url": "not a url"}),
            "target.url",
        ),
        (
            "/target",
            serde_json::json!({"kind": "webhook", "url": "https://x/", "secret": "a b"}),
            "target.secret",
        ),
        ("/name", serde_json::json!("R"), "notification rule name"),
    ];
    for (pointer, value, field) in cases {
        let mut json = base.clone();
        *json.pointer_mut(pointer).unwrap() = value;
        let r: Rule = serde_json::from_value(json).unwrap();
        let err = r.validate().unwrap_err();
        assert!(err.message().contains(field), "{pointer}: {err}");
    }
    let mut json = base.clone();
    json["max_attempts"] = serde_json::json!(0);
    let r: Rule = serde_json::from_value(json).unwrap();
    assert!(r.validate().unwrap_err().message().contains("max_attempts"));
    let err = serde_json::from_value::<Rule>(serde_json::json!({
        "name": "r", "handlers": ["*"], "on": ["exploded"],
        "target": {"kind": "webhook", "url": "https://x/"},
    }))
    .unwrap_err();
    assert!(err.to_string().contains("exploded"), "{err}");
}

#[test]
fn the_signature_is_stripes_scheme_over_the_body() {
    let at = chrono::TimeZone::timestamp_opt(&Utc, 1_800_000_000, 0).unwrap();
    let header = sign(b"k", at, b"{\"a\":1}");
    assert!(header.starts_with("t=1800000000,v1="), "{header}");
    // The same as a receiver checking it as Stripe's would: a webhook hook of our own.
    let hook: crate::hook::Hook = serde_json::from_value(serde_json::json!({
        "name": "self",
        "verify": {"kind": "stripe", "secret": "k"},
        "transform": {"kind": "raw"},
    }))
    .unwrap();
    let headers = vec![("stripe-signature".to_string(), header)];
    let delivery = crate::hook::Delivery {
        headers: &headers,
        body: b"{\"a\":1}",
        received: at,
    };
    hook.verify(&delivery, Some(b"k"), at).unwrap();
    assert!(hook.verify(&delivery, Some(b"other"), at).is_err());
}

#[test]
fn a_summary_names_the_execution_and_links_to_it() {
    let execution = crate::testsupport::execution(1, "payments", Utc::now());
    let summary = Summary::of("oncall", Outcome::Failed, &execution, "http://ui.example/");
    assert_eq!(summary.handler, "payments");
    assert_eq!(summary.event.id, "1");
    assert_eq!(
        summary.url,
        format!("http://ui.example/executions/{}", execution.id.as_str())
    );
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["outcome"], "failed");
    assert_eq!(json["event"]["type"], summary.event.ty);
    for outcome in [Outcome::Succeeded, Outcome::Failed, Outcome::DeadLettered] {
        assert_eq!(Outcome::parse(outcome.as_str()).unwrap(), outcome);
    }
    for status in [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
    ] {
        assert_eq!(DeliveryStatus::parse(status.as_str()).unwrap(), status);
    }
}
