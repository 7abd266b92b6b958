use super::*;

fn event(data: Option<(&str, &[u8])>) -> Event {
    let mut e = new_json_event("1", "/t", "x.y", Value::Null).unwrap();
    match data {
        Some((ct, bytes)) => {
            e.set_data(ct, bytes.to_vec());
        }
        None => {
            e.take_data();
        }
    }
    e
}

#[test]
fn a_step_output_is_the_data_of_what_the_function_returned() {
    assert_eq!(output_value(&[]), Value::Null);
    let one = new_json_event("1", "/t", "x.y", json!({"n": 1})).unwrap();
    assert_eq!(output_value(std::slice::from_ref(&one)), json!({"n": 1}));
    let text = event(Some(("text/plain", b"plain words")));
    assert_eq!(output_value(&[one, text]), json!([{"n": 1}, "plain words"]));
    assert_eq!(output_value(&[event(None)]), Value::Null);
}

#[test]
fn step_names_and_sources_are_stable() {
    let run = RunId::for_trigger("flow", "/src", "1");
    assert_eq!(
        run_source("flow", &run),
        format!("/workflows/flow/runs/{run}")
    );
    assert_eq!(step_handler_name("flow", "b"), "workflow.flow.b");
}
