use chrono::{TimeZone, Utc};
use cloudevents::AttributesReader;
use ring::hmac;

use super::*;

fn hook(verify: serde_json::Value, transform: serde_json::Value) -> Hook {
    let hook: Hook = serde_json::from_value(serde_json::json!({
        "name": "incoming",
        "verify": verify,
        "transform": transform,
    }))
    .unwrap();
    hook.validate().unwrap();
    hook
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect()
}

fn sign(algorithm: hmac::Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = hmac::Key::new(algorithm, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign().as_ref().to_vec()
}

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

#[test]
fn github_signature_matches_githubs_documented_example() {
    // The example of GitHub's "Validating webhook deliveries": secret "It's a Secret to
    // Everybody", payload "Hello, World!".
    let hook = hook(
        serde_json::json!({"kind": "github", "secret": "gh"}),
        serde_json::json!({"kind": "github"}),
    );
    let body = b"Hello, World!";
    let good = headers(&[(
        "X-Hub-Signature-256",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )]);
    let delivery = Delivery {
        headers: &good,
        body,
        received: now(),
    };
    hook.verify(&delivery, Some(b"It's a Secret to Everybody"), now())
        .unwrap();
    // One bit off, another secret, no header, no prefix.
    let err = hook
        .verify(&delivery, Some(b"It's a Secret to Everybody!"), now())
        .unwrap_err();
    assert!(matches!(err, Refusal::Signature(_)), "{err}");
    let bad = headers(&[(
        "X-Hub-Signature-256",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18",
    )]);
    let d = Delivery {
        headers: &bad,
        ..delivery.clone()
    };
    assert!(hook
        .verify(&d, Some(b"It's a Secret to Everybody"), now())
        .is_err());
    let none: Vec<(String, String)> = Vec::new();
    let d = Delivery {
        headers: &none,
        ..delivery.clone()
    };
    let err = hook.verify(&d, Some(b"x"), now()).unwrap_err();
    assert!(err.reason().contains("X-Hub-Signature-256"), "{err}");
    let short = headers(&[("X-Hub-Signature-256", "757107ea")]);
    let d = Delivery {
        headers: &short,
        ..delivery
    };
    assert!(hook.verify(&d, Some(b"x"), now()).is_err());
}

#[test]
fn stripe_signature_checks_the_timestamp_and_any_v1() {
    let hook = hook(
        serde_json::json!({"kind": "stripe", "secret": "st", "tolerance_seconds": 300}),
        serde_json::json!({"kind": "stripe"}),
    );
    let body = br#"{"id":"evt_1","type":"charge.succeeded","created":1800000000,"data":{"object":{"id":"ch_9"}}}"#;
    let t = now().timestamp().to_string();
    let mac = hex::encode(sign(
        hmac::HMAC_SHA256,
        b"whsec_k",
        &[t.as_bytes(), b".", body],
    ));
    let value = format!("t={t},v1={},v1={mac},v0=ignored", "00".repeat(32));
    let h = headers(&[("Stripe-Signature", &value)]);
    let delivery = Delivery {
        headers: &h,
        body,
        received: now(),
    };
    hook.verify(&delivery, Some(b"whsec_k"), now()).unwrap();
    // Outside the tolerance either way.
    let late = now() + chrono::Duration::seconds(301);
    let err = hook.verify(&delivery, Some(b"whsec_k"), late).unwrap_err();
    assert!(err.reason().contains("timestamp"), "{err}");
    let early = now() - chrono::Duration::seconds(301);
    assert!(hook.verify(&delivery, Some(b"whsec_k"), early).is_err());
    // The body changed.
    let d = Delivery {
        body: b"{}",
        ..delivery.clone()
    };
    assert!(hook.verify(&d, Some(b"whsec_k"), now()).is_err());
    // No v1.
    let only_t = format!("t={t}");
    let h2 = headers(&[("Stripe-Signature", &only_t)]);
    let d = Delivery {
        headers: &h2,
        ..delivery.clone()
    };
    assert!(hook.verify(&d, Some(b"whsec_k"), now()).is_err());

    let event = hook.transform(&delivery).unwrap();
    assert_eq!(event.ty(), "com.stripe.charge.succeeded");
    assert_eq!(event.id(), "evt_1");
    assert_eq!(event.subject(), Some("ch_9"));
    assert_eq!(event.time().unwrap().timestamp(), 1_800_000_000);
}

#[test]
fn slack_signature_matches_slacks_documented_example() {
    // Slack's "Verifying requests from Slack" example.
    let hook = hook(
        serde_json::json!({"kind": "slack", "secret": "sl"}),
        serde_json::json!({"kind": "raw"}),
    );
    let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let h = headers(&[
        ("X-Slack-Request-Timestamp", "1531420618"),
        (
            "X-Slack-Signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ),
    ]);
    let delivery = Delivery {
        headers: &h,
        body,
        received: now(),
    };
    let then = Utc.timestamp_opt(1_531_420_618 + 10, 0).unwrap();
    hook.verify(&delivery, Some(b"8f742231b10e8888abcd99yyyzzz85a5"), then)
        .unwrap();
    let err = hook
        .verify(&delivery, Some(b"8f742231b10e8888abcd99yyyzzz85a5"), now())
        .unwrap_err();
    assert!(err.reason().contains("timestamp"), "{err}");
    assert!(hook.verify(&delivery, Some(b"wrong"), then).is_err());
}

#[test]
fn gitlab_token_is_compared_whole() {
    let hook = hook(
        serde_json::json!({"kind": "gitlab", "secret": "gl"}),
        serde_json::json!({"kind": "gitlab"}),
    );
    let body = br#"{"object_kind":"merge_request","project":{"path_with_namespace":"g/p"},"object_attributes":{"action":"open"}}"#;
    for (token, ok) in [
        ("s3cret", true),
        ("s3cre", false),
        ("s3cret2", false),
        ("", false),
    ] {
        let h = headers(&[("X-Gitlab-Token", token), ("Idempotency-Key", "k-1")]);
        let d = Delivery {
            headers: &h,
            body,
            received: now(),
        };
        assert_eq!(
            hook.verify(&d, Some(b"s3cret"), now()).is_ok(),
            ok,
            "{token}"
        );
        if ok {
            let event = hook.transform(&d).unwrap();
            assert_eq!(event.ty(), "com.gitlab.merge_request.open");
            assert_eq!(event.id(), "k-1");
            assert_eq!(event.subject(), Some("g/p"));
        }
    }
}

#[test]
fn generic_hmac_takes_each_algorithm_and_encoding() {
    use base64::Engine as _;
    let body = b"{\"n\":1}";
    for (algorithm, ring_alg) in [
        ("sha1", hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
        ("sha256", hmac::HMAC_SHA256),
        ("sha384", hmac::HMAC_SHA384),
        ("sha512", hmac::HMAC_SHA512),
    ] {
        for encoding in ["hex", "base64"] {
            let hook = hook(
                serde_json::json!({"kind": "hmac", "secret": "k", "header": "X-Signature",
                    "algorithm": algorithm, "encoding": encoding, "prefix": "mac="}),
                serde_json::json!({"kind": "json", "type": "com.example.thing"}),
            );
            let mac = sign(ring_alg, b"key", &[body]);
            let text = match encoding {
                "hex" => hex::encode(&mac),
                _ => base64::engine::general_purpose::STANDARD.encode(&mac),
            };
            let good = format!("mac={text}");
            let h = headers(&[("X-Signature", &good)]);
            let d = Delivery {
                headers: &h,
                body,
                received: now(),
            };
            hook.verify(&d, Some(b"key"), now())
                .unwrap_or_else(|e| panic!("{algorithm} {encoding}: {e}"));
            assert!(hook.verify(&d, Some(b"other"), now()).is_err());
            let h = headers(&[("X-Signature", &text)]);
            let d = Delivery { headers: &h, ..d };
            let err = hook.verify(&d, Some(b"key"), now()).unwrap_err();
            assert!(err.reason().contains("mac="), "{err}");
        }
    }
}

#[test]
fn github_transform_names_the_event_and_action_and_keeps_the_body() {
    let hook = hook(
        serde_json::json!({"kind": "github", "secret": "gh"}),
        serde_json::json!({"kind": "github"}),
    );
    let body = br#"{"ref":"refs/heads/main","repository":{"full_name":"octo/repo"}}"#;
    let h = headers(&[
        ("Content-Type", "application/json"),
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("X-Other", "dropped"),
    ]);
    let d = Delivery {
        headers: &h,
        body,
        received: now(),
    };
    let event = hook.transform(&d).unwrap();
    assert_eq!(event.ty(), "com.github.push");
    assert_eq!(event.id(), "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(event.source().to_string(), "/hooks/incoming");
    assert_eq!(event.subject(), Some("octo/repo"));
    assert_eq!(event.datacontenttype(), Some("application/json"));
    assert_eq!(crate::event::data_bytes(&event).unwrap(), body.to_vec());
    let kept = crate::event::attribute(&event, HEADERS_EXTENSION).unwrap();
    let kept: BTreeMap<String, String> = serde_json::from_str(&kept).unwrap();
    assert_eq!(kept["x-github-event"], "push");
    assert!(!kept.contains_key("x-other"));
    assert_eq!(
        crate::event::attribute(&event, HOOK_EXTENSION).as_deref(),
        Some("incoming")
    );

    let body = br#"{"action":"opened","repository":{"full_name":"octo/repo"}}"#;
    let h = headers(&[
        ("X-GitHub-Event", "pull_request"),
        ("X-GitHub-Delivery", "d-2"),
    ]);
    let d = Delivery {
        headers: &h,
        body,
        received: now(),
    };
    assert_eq!(
        hook.transform(&d).unwrap().ty(),
        "com.github.pull_request.opened"
    );
    // A form-encoded delivery.
    let form = b"payload=%7B%22action%22%3A%22created%22%7D";
    let h = headers(&[
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-GitHub-Event", "issue_comment"),
        ("X-GitHub-Delivery", "d-3"),
    ]);
    let d = Delivery {
        headers: &h,
        body: form,
        received: now(),
    };
    assert_eq!(
        hook.transform(&d).unwrap().ty(),
        "com.github.issue_comment.created"
    );
    // What a sender may not choose.
    let h = headers(&[("X-GitHub-Event", "push\u{7f}"), ("X-GitHub-Delivery", "d")]);
    let d = Delivery {
        headers: &h,
        body: b"{}",
        received: now(),
    };
    assert!(matches!(hook.transform(&d), Err(Refusal::Malformed(_))));
    let h = headers(&[("X-GitHub-Event", "push")]);
    let d = Delivery {
        headers: &h,
        body: b"{}",
        received: now(),
    };
    let err = hook.transform(&d).unwrap_err();
    assert!(err.reason().contains("X-GitHub-Delivery"), "{err}");
    let h = headers(&[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "d")]);
    let d = Delivery {
        headers: &h,
        body: b"not json",
        received: now(),
    };
    assert!(matches!(hook.transform(&d), Err(Refusal::Malformed(_))));
}

#[test]
fn json_transform_reads_pointers_and_falls_back_to_the_body_digest() {
    let hook = hook(
        serde_json::json!({"kind": "none"}),
        serde_json::json!({"kind": "json", "type_pointer": "/kind", "type_prefix": "com.acme.",
            "id_pointer": "/meta/id", "subject_pointer": "/order"}),
    );
    let body = br#"{"kind":"Order.Paid","meta":{"id":42},"order":"o-7"}"#;
    let none = Vec::new();
    let d = Delivery {
        headers: &none,
        body,
        received: now(),
    };
    hook.verify(&d, None, now()).unwrap();
    let event = hook.transform(&d).unwrap();
    assert_eq!(event.ty(), "com.acme.order.paid");
    assert_eq!(event.id(), "42");
    assert_eq!(event.subject(), Some("o-7"));
    let d = Delivery {
        body: br#"{"kind":"x"}"#,
        ..d
    };
    let err = hook.transform(&d).unwrap_err();
    assert!(err.reason().contains("/meta/id"), "{err}");

    let raw = self::hook(
        serde_json::json!({"kind": "none"}),
        serde_json::json!({"kind": "raw"}),
    );
    let d = Delivery {
        headers: &none,
        body: b"\x00\x01binary",
        received: now(),
    };
    let a = raw.transform(&d).unwrap();
    let b = raw.transform(&d).unwrap();
    assert_eq!(a.ty(), RECEIVED_TYPE);
    assert_eq!(a.id(), b.id());
    assert!(a.id().starts_with("sha256:"));
    assert_eq!(a.datacontenttype(), Some("application/octet-stream"));
}

#[test]
fn validation_names_the_field() {
    let cases = [
        (
            serde_json::json!({"name": "h", "verify": {"kind": "hmac", "secret": "k", "header": "bad header"}, "transform": {"kind": "raw"}}),
            "verify.header",
        ),
        (
            serde_json::json!({"name": "h", "verify": {"kind": "stripe", "secret": "k", "tolerance_seconds": 0}, "transform": {"kind": "stripe"}}),
            "tolerance_seconds",
        ),
        (
            serde_json::json!({"name": "h", "verify": {"kind": "none"}, "transform": {"kind": "json"}}),
            "type",
        ),
        (
            serde_json::json!({"name": "h", "verify": {"kind": "none"}, "transform": {"kind": "json", "type": "a", "id_pointer": "meta/id"}}),
            "id_pointer",
        ),
        (
            serde_json::json!({"name": "h", "verify": {"kind": "none"}, "transform": {"kind": "raw"}, "rate": {"per_second": 0.0, "burst": 1}}),
            "rate.per_second",
        ),
        (
            serde_json::json!({"name": "h", "verify": {"kind": "none"}, "transform": {"kind": "raw"}, "max_body_bytes": 0}),
            "max_body_bytes",
        ),
        (
            serde_json::json!({"name": "H", "verify": {"kind": "none"}, "transform": {"kind": "raw"}}),
            "hook name",
        ),
        (
            serde_json::json!({"name": "h", "verify": {"kind": "github", "secret": "a/b"}, "transform": {"kind": "raw"}}),
            "verify.secret",
        ),
    ];
    for (json, field) in cases {
        let hook: Hook = serde_json::from_value(json.clone()).unwrap();
        let err = hook.validate().unwrap_err();
        assert!(err.message().contains(field), "{json}: {err}");
    }
    // Unknown fields are refused when parsed.
    let err = serde_json::from_value::<Hook>(serde_json::json!({"name": "h",
        "verify": {"kind": "github", "secret": "k", "tolerance": 3}, "transform": {"kind": "raw"}}))
    .unwrap_err();
    assert!(err.to_string().contains("tolerance"), "{err}");
}

#[test]
fn bucket_refills_at_the_rate_and_says_how_long_to_wait() {
    let rate = RateLimit {
        per_second: 2.0,
        burst: 3,
    };
    let t0 = std::time::Instant::now();
    let mut bucket = Bucket::full(&rate, t0);
    for _ in 0..3 {
        bucket.take(&rate, t0).unwrap();
    }
    let wait = bucket.take(&rate, t0).unwrap_err();
    assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
    bucket
        .take(&rate, t0 + std::time::Duration::from_millis(500))
        .unwrap();
    assert!(bucket
        .take(&rate, t0 + std::time::Duration::from_millis(500))
        .is_err());
    // A long idle fills it to the burst, no more.
    let later = t0 + std::time::Duration::from_secs(3600);
    for _ in 0..3 {
        bucket.take(&rate, later).unwrap();
    }
    assert!(bucket.take(&rate, later).is_err());
}
