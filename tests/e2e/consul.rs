//! Handlers in Consul: two running platforms (`ferrisfx dev` in-process, each with its own
//! gateway, executor and management server) share one handler registry, an in-process double
//! of Consul's KV HTTP API. A handler created through one's API takes effect in both gateways
//! through their watches, and a deleted one stops matching, without a restart. (The watch
//! wakes on the change at once; the tests wait for each gateway's table revision rather than
//! for a fixed time.)

use std::path::Path;
use std::time::{Duration, Instant};

use ferrisfx::settings::Settings;
use fx_core::backends::RegistrySettings;
use fx_core::registry::consul::ConsulSettings;
use fx_core::registry::consul_double::ConsulDouble;
use fx_core::testsupport::HandlerBuilder;
use fx_tests::TestPlatform;
use serde_json::{json, Value};

/// How long a change in Consul may take to reach a gateway before the test fails (it takes
/// milliseconds: the blocking query wakes on the change).
const PROPAGATION: Duration = Duration::from_secs(10);
const GREET: &str = "fx.test.consul.greet";
const SENTINEL: &str = "fx.test.consul.sentinel";

/// One running platform whose handler registry is Consul.
struct Node {
    name: &'static str,
    fx: TestPlatform,
}

impl Node {
    async fn start(name: &'static str, data_dir: &Path, consul: &str) -> Node {
        let settings = Settings {
            data_dir: data_dir.to_path_buf(),
            example: false,
            backends: fx_core::backends::BackendSettings {
                registry: RegistrySettings::Consul(ConsulSettings {
                    address: consul.to_string(),
                    ..ConsulSettings::default()
                }),
                ..Default::default()
            },
            ..fx_tests::open_settings()
        };
        Node {
            name,
            fx: TestPlatform::start_with(settings).await,
        }
    }

    async fn stop(self) {
        self.fx.stop().await;
    }

    async fn create_handler(&self, name: &str, event_type: &str) -> u64 {
        let handler = HandlerBuilder::new(name)
            .event_type(event_type)
            .package("hello")
            .build();
        let v = self.fx.create_handler(&handler).await;
        v["revision"].as_u64().expect("a revision")
    }

    async fn delete_handler(&self, name: &str) {
        let (status, v) = self.fx.delete(&format!("/api/v1/handlers/{name}")).await;
        assert!(
            (200..300).contains(&status),
            "{}: deleting handler {name}: {status} {v}",
            self.name
        );
    }

    async fn emit(&self, id: &str, event_type: &str) {
        self.fx
            .emit(id, event_type, json!({"name": self.name}))
            .await;
    }

    /// Waits until the execution of `handler` on event `event_id` succeeded.
    async fn wait_succeeded(&self, handler: &str, event_id: &str) {
        self.fx
            .wait_event_succeeded(handler, event_id, Duration::from_secs(60))
            .await;
    }

    /// Waits until this node's gateway matches against handler revision `revision` (or a
    /// later one): the change in Consul has reached it.
    async fn until_gateway_sees(&self, revision: u64) {
        self.fx
            .until_gateway_sees_within(revision, PROPAGATION)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handler_created_in_consul_runs_in_two_gateways_and_stops_when_deleted() {
    let consul = ConsulDouble::start().await.unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Node::start("a", dir_a.path(), &consul.address()).await;
    let b = Node::start("b", dir_b.path(), &consul.address()).await;
    // Each platform has its own package and state stores; the registry is what they share.
    for node in [&a, &b] {
        node.fx.upload_example("hello").await;
    }
    // A handler present all along: an event for it, sent after another, proves the other was
    // dispatched (the dispatcher consumes in order).
    let revision = a.create_handler("sentinel", SENTINEL).await;
    for node in [&a, &b] {
        node.until_gateway_sees(revision).await;
    }
    for node in [&a, &b] {
        node.emit(&format!("{}-sentinel-0", node.name), SENTINEL)
            .await;
        node.wait_succeeded("sentinel", &format!("{}-sentinel-0", node.name))
            .await;
    }

    // Created through a's API: both gateways see it through their watch and run it.
    let revision = a.create_handler("greeter", GREET).await;
    for node in [&a, &b] {
        node.until_gateway_sees(revision).await;
    }
    for node in [&a, &b] {
        node.emit(&format!("{}-greet-1", node.name), GREET).await;
    }
    for node in [&a, &b] {
        node.wait_succeeded("greeter", &format!("{}-greet-1", node.name))
            .await;
    }

    // Deleted through b's API: once their watch brings the deletion, neither gateway matches
    // it any more.
    b.delete_handler("greeter").await;
    let revision = consul.index();
    for node in [&a, &b] {
        node.until_gateway_sees(revision).await;
    }
    for node in [&a, &b] {
        node.emit(&format!("{}-greet-2", node.name), GREET).await;
        node.emit(&format!("{}-sentinel-1", node.name), SENTINEL)
            .await;
    }
    for node in [&a, &b] {
        node.wait_succeeded("sentinel", &format!("{}-sentinel-1", node.name))
            .await;
        let ran: Vec<Value> = node
            .fx
            .executions("greeter")
            .await
            .into_iter()
            .map(|e| e["event_id"].clone())
            .collect();
        assert_eq!(
            ran,
            [json!(format!("{}-greet-1", node.name))],
            "{}: the deleted handler still matched",
            node.name
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_consul_down_the_gateway_keeps_its_handlers_and_catches_up_once_it_is_back() {
    let mut consul = ConsulDouble::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start("a", dir.path(), &consul.address()).await;
    node.fx.upload_example("hello").await;
    let revision = node.create_handler("greeter", GREET).await;
    node.until_gateway_sees(revision).await;

    consul.go_down();
    // The API cannot reach the store and says so; the gateway runs on its last good table.
    let (status, v) = node.fx.get("/api/v1/handlers").await;
    assert_eq!(status, 503, "{v}");
    assert!(v.to_string().contains(&consul.address()), "{v}");
    node.emit("greet-during-outage", GREET).await;
    node.wait_succeeded("greeter", "greet-during-outage").await;

    // Back up: a handler created now reaches the gateway once its retry (backoff of at most
    // ten seconds) gets through.
    consul.come_back().await.unwrap();
    let _ = node.create_handler("late", SENTINEL).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    for attempt in 0.. {
        let id = format!("late-{attempt}");
        node.emit(&id, SENTINEL).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        if !node.fx.executions("late").await.is_empty() {
            node.wait_succeeded("late", &id).await;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not pick up a handler created after consul came back"
        );
    }
    node.stop().await;
}
