//! `workflow-step`: a workflow step for the examples and the tests.
//!
//! A step's input is the run's context: `{"workflow", "run", "step", "input", "trigger",
//! "steps": {<dependency>: <output>}, "failed": {<dependency>: <why>}}`, plus `item` and
//! `index` for an item of a map step. The run's `input` steers this function:
//!
//! - `sleep_ms`: `{"<step>": ms}`: sleeps that long first (to make steps overlap);
//! - `fail`: `["<step>", ...]`: those steps fail with `requested failure of <step>`;
//! - `fail_items`: `[index, ...]`: those items of a map step fail;
//! - `echo`: `["<step>", ...]`: those steps put the run's input into their output (`echo`).
//!
//! It returns one event `com.ferrisfx.workflow.step.done` whose JSON data is the step's output:
//! `{"step", "started_ms", "finished_ms", "received": [<dependencies whose outputs it got>],
//! "outputs": {<dependency>: <output>}}`, and for a map item `{"item", "index", "double"}`
//! (twice the item when it is a number). A dependency's output is passed on without its own
//! `outputs`, so a long chain does not nest deeper at every step.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrisfx_guest::{log, Error, Event};
use serde_json::{json, Value};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `output` without its `outputs` (each item's, for a map's list of outputs).
fn shallow(output: &Value) -> Value {
    match output {
        Value::Array(items) => Value::Array(items.iter().map(shallow).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| key.as_str() != "outputs")
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn handle(event: Event) -> Result<Vec<Event>, Error> {
    let started_ms = now_ms();
    let context: Value = event.json()?;
    let step = context["step"].as_str().unwrap_or_default().to_owned();
    let input = &context["input"];
    log::info_with("workflow step", &[("step", &step)]);
    if let Some(ms) = input["sleep_ms"][&step].as_u64() {
        std::thread::sleep(Duration::from_millis(ms.min(60_000)));
    }
    let fails = |list: &Value, wanted: &Value| {
        list.as_array()
            .is_some_and(|items| items.iter().any(|i| i == wanted))
    };
    if fails(&input["fail"], &json!(step)) {
        return Err(Error::new(format!("requested failure of {step}")));
    }
    let mut output = json!({
        "step": step,
        "started_ms": started_ms,
        "received": context["steps"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default(),
        "outputs": context["steps"].as_object().map(|steps| {
            steps
                .iter()
                .map(|(name, output)| (name.clone(), shallow(output)))
                .collect::<serde_json::Map<_, _>>()
        }),
    });
    if fails(&input["echo"], &json!(step)) {
        output["echo"] = input.clone();
    }
    if let Some(index) = context.get("index") {
        if fails(&input["fail_items"], index) {
            return Err(Error::new(format!("requested failure of item {index}")));
        }
        output["item"] = context["item"].clone();
        output["index"] = index.clone();
        if let Some(n) = context["item"].as_f64() {
            output["double"] = json!(n * 2.0);
        }
    }
    output["finished_ms"] = json!(now_ms());
    let done = Event::new(
        format!("{}-done", event.id()),
        "/functions/workflow-step",
        "com.ferrisfx.workflow.step.done",
    )
    .with_json(&output)?;
    Ok(vec![done])
}

ferrisfx_guest::export_handler!(handle);
