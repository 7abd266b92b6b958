use super::*;

#[test]
fn execution_id_depends_on_source_id_and_handler_only() {
    let a = ExecutionId::derive("/s", "1", "h");
    assert_eq!(a, ExecutionId::derive("/s", "1", "h"));
    assert_ne!(a, ExecutionId::derive("/s", "1", "h2"));
    assert_ne!(a, ExecutionId::derive("/s", "2", "h"));
    // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
    assert_ne!(
        ExecutionId::derive("ab", "c", "h"),
        ExecutionId::derive("a", "bc", "h")
    );
    assert_eq!(ExecutionId::parse(a.as_str()).unwrap(), a);
    assert!(ExecutionId::parse("xyz").is_err());
}

#[test]
fn state_events_are_tagged_json() {
    let e = StateEvent::Started {
        execution_id: ExecutionId::derive("/s", "1", "h"),
        attempt: 1,
        at: Utc::now(),
        executor: "x".into(),
    };
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["state"], "started");
    let back: StateEvent = serde_json::from_value(json).unwrap();
    assert_eq!(back, e);
}
