//! Tests of the handler form's parsing and refusals (no browser).

use super::form::rows_of;
use super::*;
use fx_core::handler::Filter;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn rows_build_the_filter_and_a_stored_filter_comes_back_as_rows() {
    let form = HandlerForm::from_pairs(pairs(&[
        ("name", "orders"),
        ("combine", "any"),
        ("cond.0.attribute", "type"),
        ("cond.0.op", "prefix"),
        ("cond.0.value", "com.example."),
        ("cond.1.not", "on"),
        ("cond.1.attribute", "tenant"),
        ("cond.1.op", "exact"),
        ("cond.1.value", "test"),
        ("cond.2.attribute", ""),
        ("cond.2.value", ""),
        ("package", "hello"),
        ("enabled", "on"),
    ]));
    let handler = form.to_handler().unwrap();
    let json = serde_json::to_value(&handler.filter).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"any": [
            {"prefix": {"attribute": "type", "value": "com.example."}},
            {"not": {"exact": {"attribute": "tenant", "value": "test"}}}
        ]})
    );
    assert_eq!(handler.package.version, "latest");
    assert_eq!(handler.pool, "default");
    assert!(handler.enabled);
    let again = HandlerForm::of(&handler, 3);
    assert_eq!(again.combine, "any");
    assert_eq!(again.conditions.len(), 2);
    assert!(again.conditions[1].negate);
    assert_eq!(again.to_handler().unwrap(), handler);
}

#[test]
fn each_refused_field_says_why() {
    let form = HandlerForm::from_pairs(pairs(&[
        ("name", "Bad Name"),
        ("cond.0.attribute", "Not An Attribute!"),
        ("cond.0.op", "exact"),
        ("cond.0.value", "x"),
        ("package", "hello"),
        ("memory_mb", "lots"),
        ("max_attempts", "3"),
        ("backoff_ms", "5000"),
        ("max_backoff_ms", "10"),
    ]));
    let errors = form.to_handler().unwrap_err();
    assert!(errors["name"].contains("Bad Name"), "{errors:?}");
    assert!(
        errors["filter"].contains("not a cloudevents attribute name"),
        "{errors:?}"
    );
    assert!(errors["limits"].contains("whole number"), "{errors:?}");
    let no_conditions = HandlerForm::from_pairs(pairs(&[("name", "x"), ("package", "p")]));
    assert!(no_conditions.to_handler().unwrap_err()["filter"].contains("at least one"));
}

#[test]
fn configuration_secrets_and_every_limit_survive_a_round_trip() {
    let form = HandlerForm::from_pairs(pairs(&[
        ("name", "configured"),
        ("cond.0.attribute", "type"),
        ("cond.0.op", "exact"),
        ("cond.0.value", "t"),
        ("package", "hello"),
        ("max_output_bytes", "2048"),
        ("max_log_bytes", "4096"),
        (
            "config",
            "greeting = Howdy\n# a comment\n\nurl=https://x.test/?a=b\n",
        ),
        ("secrets", "api-token, db-url"),
        ("http_allow", "api.example.com 127.0.0.1:8080"),
    ]));
    let handler = form.to_handler().unwrap();
    assert_eq!(handler.config["greeting"], "Howdy");
    assert_eq!(handler.config["url"], "https://x.test/?a=b");
    assert_eq!(handler.secrets.len(), 2);
    assert_eq!(handler.http_allow.len(), 2);
    assert_eq!(
        (
            handler.limits.max_output_bytes,
            handler.limits.max_log_bytes
        ),
        (Some(2048), Some(4096))
    );
    assert_eq!(HandlerForm::of(&handler, 1).to_handler().unwrap(), handler);

    let bad = HandlerForm::from_pairs(pairs(&[
        ("name", "x"),
        ("package", "p"),
        ("config", "no equals sign"),
        ("secrets", "..data"),
    ]));
    let errors = bad.to_handler().unwrap_err();
    assert!(errors["config"].contains("line 1"), "{errors:?}");
    assert!(errors["secrets"].contains("..data"), "{errors:?}");
}

#[test]
fn nested_filters_are_edited_as_json() {
    let filter: Filter = serde_json::from_value(serde_json::json!({"all": [
        {"any": [{"exact": {"attribute": "type", "value": "a"}}]}
    ]}))
    .unwrap();
    assert!(rows_of(&filter).is_none());
    let form = HandlerForm::from_pairs(pairs(&[
        ("name", "nested"),
        ("package", "hello"),
        ("filter_json", &serde_json::to_string(&filter).unwrap()),
    ]));
    assert_eq!(form.to_handler().unwrap().filter, filter);
}
