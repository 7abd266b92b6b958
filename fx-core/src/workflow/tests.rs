use super::*;

fn workflow(steps: serde_json::Value) -> Workflow {
    serde_json::from_value(serde_json::json!({"name": "flow", "steps": steps})).unwrap()
}

fn step(name: &str, after: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "package": {"name": "hello"},
        "after": after.iter().map(|s| serde_json::json!({"step": s})).collect::<Vec<_>>(),
    })
}

#[test]
fn a_diamond_is_valid_and_layered() {
    let w = workflow(serde_json::json!([
        step("d", &["b", "c"]),
        step("b", &["a"]),
        step("c", &["a"]),
        step("a", &[]),
    ]));
    w.validate().unwrap();
    assert_eq!(w.layers(), vec![vec!["a"], vec!["b", "c"], vec!["d"]]);
    assert_eq!(w.on_failure, FailurePolicy::Stop);
    assert_eq!(w.steps[0].after[0].on, Condition::Success);
}

#[test]
fn a_cycle_is_refused_with_the_steps_on_it() {
    let w = workflow(serde_json::json!([
        step("a", &[]),
        step("b", &["a", "d"]),
        step("c", &["b"]),
        step("d", &["c"]),
    ]));
    let err = w.validate().unwrap_err();
    let message = err.message();
    assert!(message.contains("cycle"), "{message}");
    // The cycle in run order, whichever step it starts from.
    assert!(
        ["b → c → d → b", "c → d → b → c", "d → b → c → d"]
            .iter()
            .any(|c| message.contains(c)),
        "{message}"
    );
    assert!(!message.contains("a →"), "{message}");
    let itself = workflow(serde_json::json!([step("a", &["a"])]));
    assert!(itself.validate().unwrap_err().message().contains("a → a"));
}

#[test]
fn problems_are_named() {
    let cases = [
        (
            serde_json::json!([step("a", &["ghost"])]),
            "no step \"ghost\"",
        ),
        (serde_json::json!([step("a", &[]), step("a", &[])]), "twice"),
        (serde_json::json!([]), "1 to 1000"),
        (
            serde_json::json!([{"name": "a", "package": {"name": "hello"}, "map": "items"}]),
            "JSON pointer",
        ),
        (
            serde_json::json!([step("a", &[]), step("b", &["a", "a"])]),
            "twice",
        ),
    ];
    for (steps, says) in cases {
        let err = workflow(steps.clone()).validate().unwrap_err();
        assert!(err.message().contains(says), "{steps}: {err}");
    }
    let many: Vec<serde_json::Value> = (0..1001).map(|i| step(&format!("s{i}"), &[])).collect();
    let err = workflow(serde_json::Value::Array(many))
        .validate()
        .unwrap_err();
    assert!(err.message().contains("1001"), "{err}");
}

#[test]
fn a_long_chain_of_the_most_steps_validates_without_recursion() {
    let chain: Vec<serde_json::Value> = (0..MAX_STEPS)
        .map(|i| {
            if i == 0 {
                step("s0", &[])
            } else {
                step(&format!("s{i}"), &[&format!("s{}", i - 1)])
            }
        })
        .collect();
    let w = workflow(serde_json::Value::Array(chain));
    w.validate().unwrap();
    assert_eq!(w.layers().len(), MAX_STEPS);
}

#[test]
fn the_adjacency_matrix_form_is_imported() {
    let steps: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    let packages: Vec<String> = ["p", "q", "q", "r"].map(String::from).to_vec();
    let matrix = vec![
        vec![0, 1, 1, 0],
        vec![0, 0, 0, 1],
        vec![0, 0, 0, 1],
        vec![0, 0, 0, 0],
    ];
    let w = Workflow::from_matrix("imported", &steps, &packages, &matrix).unwrap();
    assert_eq!(w.layers(), vec![vec!["a"], vec!["b", "c"], vec!["d"]]);
    assert_eq!(w.steps[3].package.as_ref().unwrap().name, "r");
    let mut cyclic = matrix.clone();
    cyclic[3][0] = 1;
    let err = Workflow::from_matrix("imported", &steps, &packages, &cyclic).unwrap_err();
    assert!(err.message().contains("cycle"), "{err}");
    let err = Workflow::from_matrix("imported", &steps, &packages, &matrix[..3]).unwrap_err();
    assert!(err.message().contains("4 × 4"), "{err}");
    let mut two = matrix.clone();
    two[0][1] = 2;
    assert!(Workflow::from_matrix("imported", &steps, &packages, &two).is_err());
}

#[test]
fn a_step_runs_exactly_one_of_a_package_and_a_handler() {
    let both = workflow(serde_json::json!([{
        "name": "a", "package": {"name": "hello"}, "handler": "greet",
    }]));
    assert!(both
        .validate()
        .unwrap_err()
        .message()
        .contains("exactly one"));
    let neither = workflow(serde_json::json!([{"name": "a"}]));
    assert!(neither
        .validate()
        .unwrap_err()
        .message()
        .contains("exactly one"));
    let handler = workflow(serde_json::json!([{"name": "a", "handler": "greet"}]));
    handler.validate().unwrap();
    let pooled = workflow(serde_json::json!([{"name": "a", "handler": "greet", "pool": "gpu"}]));
    assert!(pooled.validate().unwrap_err().message().contains("pool"));
}

#[test]
fn triggers_match_events_and_schedule_ticks() {
    let w: Workflow = serde_json::from_value(serde_json::json!({
        "name": "flow",
        "steps": [{"name": "a", "package": {"name": "hello"}}],
        "trigger": {
            "event": {"exact": {"attribute": "type", "value": "com.example.go"}},
            "schedule": "nightly",
        },
    }))
    .unwrap();
    w.validate().unwrap();
    let event = |ty: &str, source: &str| {
        crate::event::new_json_event("1", source, ty, serde_json::json!({})).unwrap()
    };
    assert!(w.trigger.matches(&event("com.example.go", "/x")));
    assert!(w
        .trigger
        .matches(&event("com.ferrisfx.schedule.fired", "/schedules/nightly")));
    assert!(!w
        .trigger
        .matches(&event("com.ferrisfx.schedule.fired", "/schedules/daily")));
    assert!(!w.trigger.matches(&event("com.example.other", "/x")));
    assert!(!Trigger::default().matches(&event("com.example.go", "/x")));
}

#[test]
fn a_definition_is_read_from_json_or_yaml() {
    let yaml = "name: flow\non_failure: continue\nsteps:\n  - name: a\n    package: {name: hello}\n  - name: b\n    package:\n      name: hello\n    after:\n      - step: a\n        on: failure\n";
    let w = Workflow::parse(yaml).unwrap();
    assert_eq!(w.on_failure, FailurePolicy::Continue);
    assert_eq!(w.steps[1].after[0].on, Condition::Failure);
    let json = serde_json::to_string(&w).unwrap();
    assert_eq!(Workflow::parse(&json).unwrap(), w);
    let bad = Workflow::parse(
        "name: flow\nsteps: [{name: a, package: {name: hello}, after: [{step: a}]}]",
    );
    assert!(bad.unwrap_err().message().contains("cycle"));
    assert!(Workflow::parse("name: [")
        .unwrap_err()
        .message()
        .contains("YAML"));
    assert!(Workflow::parse("{").unwrap_err().message().contains("JSON"));
}

#[test]
fn the_example_workflows_are_valid() {
    let diamond =
        Workflow::parse(include_str!("../../../examples/workflows/diamond.yaml")).unwrap();
    assert_eq!(diamond.layers(), vec![vec!["a"], vec!["b", "c"], vec!["d"]]);
    let fan = Workflow::parse(include_str!("../../../examples/workflows/fan-out.yaml")).unwrap();
    assert_eq!(fan.steps[0].map.as_deref(), Some("/input/items"));
    let matrix: serde_json::Value =
        serde_json::from_str(include_str!("../../../examples/workflows/matrix.json")).unwrap();
    let names: Vec<String> = serde_json::from_value(matrix["steps"].clone()).unwrap();
    let packages: Vec<String> = serde_json::from_value(matrix["packages"].clone()).unwrap();
    let cells: Vec<Vec<u8>> = serde_json::from_value(matrix["matrix"].clone()).unwrap();
    let imported =
        Workflow::from_matrix("gorchestrator-import", &names, &packages, &cells).unwrap();
    assert_eq!(
        imported.layers(),
        vec![vec!["fetch"], vec!["resize", "thumbnail"], vec!["publish"]]
    );
}
