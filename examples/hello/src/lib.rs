//! `hello`: the smallest useful FerrisFX function.
//!
//! Answers any event with one `com.ferrisfx.hello.greeted` event whose JSON data is
//! `{"greeting": "Hello, <name>!"}`, where `<name>` is the `name` string of the input's JSON data,
//! or `world` when there is none. The handler may change the greeting word with its `greeting`
//! configuration value (default `Hello`, from `fx.toml`).

use ferrisfx_guest::{config, log, Error, Event};
use serde_json::{json, Value};

/// The source of the events this function produces.
const SOURCE: &str = "/functions/hello";

/// The type of the events this function produces.
const GREETED: &str = "com.ferrisfx.hello.greeted";

fn handle(event: Event) -> Result<Vec<Event>, Error> {
    log::info_with(
        "hello from FerrisFX",
        &[("event_id", event.id()), ("event_type", event.ty())],
    );
    let name = name_of(&event);
    let greeting = Event::new(format!("{}-greeting", event.id()), SOURCE, GREETED)
        .with_json(&json!({ "greeting": format!("{}, {name}!", greeting_word()) }))?;
    Ok(vec![greeting])
}

/// The `greeting` configuration value, `Hello` when none is set.
fn greeting_word() -> String {
    config::get("greeting").unwrap_or_else(|| "Hello".to_owned())
}

/// `data.name` when the data is JSON with a `name` string, else `world`.
fn name_of(event: &Event) -> String {
    event
        .json::<Value>()
        .ok()
        .and_then(|data| data.get("name").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "world".to_owned())
}

ferrisfx_guest::export_handler!(handle);
