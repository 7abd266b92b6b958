//! Warm instances: a handler that opts in (`reuse_instances`) runs events in an instance kept
//! from earlier events, whose state survives; every other handler gets a fresh instance per
//! event; an instance that trapped is never reused.

use std::sync::Arc;

use cloudevents::{AttributesReader, Data};
use fx_core::execution::{FailureKind, Invocation};
use fx_core::package::PackageDigest;

use crate::support::{invocation, Fixture};

/// The `count` the `fx.test.count` function returned: calls its instance has handled.
fn count_of(output: &[fx_core::event::Event]) -> u64 {
    assert_eq!(output[0].ty(), "fx.test.counted");
    let value: serde_json::Value = match output[0].data() {
        Some(Data::Json(value)) => value.clone(),
        Some(Data::Binary(bytes)) => serde_json::from_slice(bytes).unwrap(),
        other => panic!("no JSON data: {other:?}"),
    };
    value["count"].as_u64().unwrap()
}

fn counting(digest: &PackageDigest, id: &str, reuse: bool) -> Invocation {
    let mut inv = invocation(digest, "fx.test.count", id, Default::default());
    inv.handler.reuse_instances = reuse;
    inv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reusing_handler_keeps_its_instance_and_others_get_a_fresh_one_each_time() {
    let fx = Fixture::new();
    let digest = fx.add_example("misbehave");
    let executor = Arc::new(fx.executor());

    for i in 0..3 {
        let output = executor
            .invoke(&counting(&digest, &format!("fresh-{i}"), false))
            .await
            .result
            .unwrap();
        assert_eq!(count_of(&output), 1, "a fresh instance per event");
    }
    assert_eq!(executor.warm_instances(), 0);

    let mut counts = Vec::new();
    for i in 0..3 {
        let output = executor
            .invoke(&counting(&digest, &format!("warm-{i}"), true))
            .await
            .result
            .unwrap();
        counts.push(count_of(&output));
    }
    assert_eq!(counts, [1, 2, 3], "one warm instance, its state kept");
    assert_eq!(executor.warm_instances(), 1);

    // The trap runs in the same warm instance and ends it: it is dropped, never reused, and
    // the next event starts in a new instance.
    let mut trap = invocation(&digest, "fx.test.trap", "warm-trap", Default::default());
    trap.handler.reuse_instances = true;
    let failure = executor.invoke(&trap).await.result.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Trap);
    assert_eq!(
        executor.warm_instances(),
        0,
        "a trapped instance is not kept"
    );
    let output = executor
        .invoke(&counting(&digest, "warm-after-trap", true))
        .await
        .result
        .unwrap();
    assert_eq!(count_of(&output), 1, "a new instance after the trap");
}
