//! `{{name}}`: a FerrisFX function.
//!
//! Answers any event with one `com.example.{{name}}.greeted` event whose JSON data is
//! `{"greeting": "Hello, <name>!"}`, where `<name>` is the `name` string of the input's JSON
//! data, or `world` when there is none. The greeting word is the `greeting` configuration
//! value (default `Hello`, in `fx.toml`; a handler can set another).

use ferrisfx_guest::{config, log, Error, Event};
use serde_json::{json, Value};

/// The source of the events this function produces.
const SOURCE: &str = "/functions/{{name}}";

/// The type of the events this function produces.
const GREETED: &str = "com.example.{{name}}.greeted";

fn handle(event: Event) -> Result<Vec<Event>, Error> {
    log::info_with(
        "hello from FerrisFX",
        &[("event_id", event.id()), ("event_type", event.ty())],
    );
    let name = event
        .json::<Value>()
        .ok()
        .and_then(|data| data.get("name").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "world".to_owned());
    let greeting = Event::new(format!("{}-greeting", event.id()), SOURCE, GREETED)
        .with_json(&json!({ "greeting": format!("{}, {name}!", greeting_word()) }))?;
    Ok(vec![greeting])
}

/// The `greeting` configuration value, `Hello` when none is set.
fn greeting_word() -> String {
    config::get("greeting").unwrap_or_else(|| "Hello".to_owned())
}

ferrisfx_guest::export_handler!(handle);
