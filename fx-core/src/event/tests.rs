use super::*;
use cloudevents::AttributesWriter;

fn sample() -> Event {
    let mut e = new_json_event(
        "e-1",
        "/shop",
        "com.example.order",
        serde_json::json!({"n": 1}),
    )
    .unwrap();
    e.set_subject(Some("order-7"));
    e.set_extension("tenant", "acme");
    e
}

#[test]
fn binary_message_round_trips() {
    let event = sample();
    let message = encode_message(&event);
    assert_eq!(message.header("ce_id"), Some("e-1"));
    assert_eq!(message.key.as_deref(), Some("/shop e-1"));
    let back = decode_message(&message).unwrap();
    assert_eq!(back.id(), "e-1");
    assert_eq!(attribute(&back, "tenant").as_deref(), Some("acme"));
    assert_eq!(attribute(&back, "subject").as_deref(), Some("order-7"));
    assert_eq!(data_json(&back), Some(serde_json::json!({"n": 1})));
}

#[test]
fn structured_message_is_accepted() {
    let body = serde_json::to_vec(&sample()).unwrap();
    let message = Message {
        key: None,
        headers: vec![("content-type".into(), STRUCTURED_CONTENT_TYPE.into())],
        payload: body,
    };
    let back = decode_message(&message).unwrap();
    assert_eq!(back.ty(), "com.example.order");
}

#[test]
fn partition_key_prefers_the_extension() {
    let mut event = sample();
    event.set_extension("partitionkey", "customer-9");
    assert_eq!(partition_key(&event), "customer-9");
}

#[test]
fn missing_required_attributes_are_named() {
    let headers = [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-type", "t")];
    let err = decode_binding("ce-", headers, b"").unwrap_err();
    assert!(err.message().contains("\"source\""), "{err}");

    let err = decode_structured(br#"{"specversion":"1.0","source":"/s","type":"t"}"#).unwrap_err();
    assert!(err.message().contains("\"id\""), "{err}");
}

#[test]
fn values_a_backend_would_refuse_are_refused_in_both_modes() {
    let binary = |name: &str, value: &str| {
        let mut headers = vec![
            ("ce-specversion".to_string(), "1.0".to_string()),
            ("ce-id".to_string(), "1".to_string()),
            ("ce-source".to_string(), "/s".to_string()),
            ("ce-type".to_string(), "t".to_string()),
        ];
        headers.retain(|(k, _)| k != &format!("ce-{name}"));
        headers.push((format!("ce-{name}"), value.to_string()));
        decode_binding(
            "ce-",
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            b"",
        )
    };
    let structured = |name: &str, value: &str| {
        let mut object = serde_json::json!({
            "specversion": "1.0", "id": "1", "source": "/s", "type": "t",
        });
        object[name] = serde_json::Value::String(value.to_string());
        decode_structured(object.to_string().as_bytes())
    };
    let long = "x".repeat(MAX_ATTRIBUTE_BYTES + 1);
    for (name, value, says) in [
        ("id", "a\0b", "control character"),
        ("type", "t\u{1b}[31m", "control character"),
        ("subject", "line\nbreak", "control character"),
        ("tenant", "x\0", "control character"),
        ("id", long.as_str(), "bytes long"),
        ("tenant", long.as_str(), "bytes long"),
    ] {
        for (mode, result) in [
            ("binary", binary(name, value)),
            ("structured", structured(name, value)),
        ] {
            let err = result.expect_err(&format!("{mode} {name}"));
            assert_eq!(err.kind(), crate::ErrorKind::Invalid);
            assert!(err.message().contains(says), "{mode} {name}: {err}");
            assert!(err.message().contains(name), "{mode} {name}: {err}");
        }
    }
    // Extension names are checked in structured mode as in binary mode.
    let err = structured("Bad-Name", "v").unwrap_err();
    assert!(err.message().contains("extension attribute name"), "{err}");
    let err = binary("bad_name", "v").unwrap_err();
    assert!(err.message().contains("extension attribute name"), "{err}");
    let err = structured(&"x".repeat(MAX_EXTENSION_NAME + 1), "v").unwrap_err();
    assert!(err.message().contains("extension attribute name"), "{err}");
    // At the limits, accepted.
    let longest = "y".repeat(MAX_ATTRIBUTE_BYTES);
    binary("id", &longest).unwrap();
    structured("tenant", &longest).unwrap();
    structured("unicode", "größe ✓").unwrap();
}

/// Kafka messages as the official CloudEvents SDKs write them (recorded bytes: Python
/// 1.13 and JavaScript 8.0 run here, Go's derived from its source; see
/// `testdata/cloudevents-sdk-kafka.json`), binary and structured mode, decode to the same
/// event.
#[test]
fn kafka_messages_of_the_python_go_and_javascript_sdks_decode() {
    use base64::Engine as _;
    let fixtures: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../../testdata/cloudevents-sdk-kafka.json")).unwrap();
    assert!(fixtures.len() >= 12, "{}", fixtures.len());
    let mut sdks = std::collections::BTreeSet::new();
    for fixture in &fixtures {
        let what = format!(
            "{} {}: {}",
            fixture["sdk"], fixture["mode"], fixture["note"]
        );
        let message = Message {
            key: fixture["key"].as_str().map(str::to_string),
            headers: fixture["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_string(),
                        h[1].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
            payload: base64::engine::general_purpose::STANDARD
                .decode(fixture["value_base64"].as_str().unwrap())
                .unwrap(),
        };
        let event = decode_message(&message).unwrap_or_else(|e| panic!("{what}: {}", e.chain()));
        assert!(event.id().starts_with("sdk-"), "{what}");
        assert_eq!(event.source().to_string(), "/sdk/test", "{what}");
        assert_eq!(event.ty(), "com.example.sdk", "{what}");
        assert_eq!(
            data_json(&event),
            Some(serde_json::json!({"n": 1, "name": "Ferris"})),
            "{what}"
        );
        assert_eq!(
            event.time().map(|t| t.to_rfc3339()),
            Some("2026-12-02T10:00:00+00:00".to_string()),
            "{what}"
        );
        if let Some(tenant) = attribute(&event, "tenant") {
            assert_eq!(tenant, "acme", "{what}");
        }
        sdks.insert(
            fixture["sdk"]
                .as_str()
                .unwrap()
                .split('-')
                .next()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(sdks.into_iter().collect::<Vec<_>>(), ["go", "js", "python"]);
}

#[test]
fn a_message_without_ce_headers_that_is_not_an_event_is_still_refused() {
    for body in [
        &br#"{"n": 1}"#[..],
        b"[1]",
        b"plain",
        br#"{"specversion": 1}"#,
    ] {
        let message = Message {
            key: None,
            headers: vec![("content-type".into(), "application/json".into())],
            payload: body.to_vec(),
        };
        assert!(decode_message(&message).is_err(), "{body:?}");
    }
}

#[test]
fn bad_json_and_non_events_are_refused() {
    let err = decode_structured(b"{not json").unwrap_err();
    assert!(err.message().contains("malformed json"), "{err}");

    let headers = [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "/s"),
        ("ce-type", "t"),
        ("content-type", "application/json"),
    ];
    let err = decode_binding("ce-", headers, b"{oops").unwrap_err();
    assert!(err.message().contains("undecodable data"), "{err}");

    let err = decode_binding("ce-", [("content-type", "text/plain")], b"hi").unwrap_err();
    assert!(err.message().contains("not a cloudevent"), "{err}");
}

#[test]
fn json_depth_counts_nested_arrays_and_objects() {
    use serde_json::json;
    assert_eq!(json_depth(&json!(1), 10), 0);
    assert_eq!(json_depth(&json!([]), 10), 1);
    assert_eq!(json_depth(&json!({"a": [1, {"b": {}}], "c": 2}), 10), 4);
    assert_eq!(
        json_depth(&json!([[[[]]]]), 2),
        3,
        "stops counting past the limit"
    );
}

#[test]
fn data_nested_too_deep_is_refused_in_both_modes_and_when_built() {
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let deep = nested(MAX_DATA_DEPTH + 1);
    let structured = format!(
        r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/json","data":{deep}}}"#
    );
    let err = decode_structured(structured.as_bytes()).unwrap_err();
    assert!(err.message().contains("levels"), "{err}");
    let headers = [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "/s"),
        ("ce-type", "t"),
        ("content-type", "application/json"),
    ];
    let err = decode_binding("ce-", headers, deep.as_bytes()).unwrap_err();
    assert!(err.message().contains("levels"), "{err}");
    let value: serde_json::Value = serde_json::from_str(&deep).unwrap();
    let err = new_json_event("1", "/s", "t", value).unwrap_err();
    assert!(err.message().contains("levels"), "{err}");

    let fits = nested(MAX_DATA_DEPTH);
    let event = decode_binding("ce-", headers, fits.as_bytes()).unwrap();
    assert!(data_json(&event).is_some());
}
