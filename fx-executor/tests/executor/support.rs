//! Fixtures: the example packages, an in-memory package store, a bus that records commits, and
//! invocations built the way the gateway builds them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use fx_core::bus::embedded::EmbeddedBus;
use fx_core::bus::{Delivery, EventBus, Position, Subscription};
use fx_core::event::{new_json_event, Message};
use fx_core::execution::{ExecutionId, Invocation, ResolvedPackage};
use fx_core::limits::{LimitOverrides, Limits};
use fx_core::objects::PackageStore;
use fx_core::package::PackageDigest;
use fx_core::testsupport::HandlerBuilder;
use fx_core::{Error, Result};
use fx_executor::{Executor, ExecutorSettings};
use serde_json::json;

/// The bytes of `examples/dist/<name>.fxpkg`.
pub fn example(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/dist/{name}.fxpkg"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run infra/scripts/build-examples.sh first",
            path.display()
        )
    })
}

/// A package store over a map. Unlike a real one it hands out whatever it holds, so that tests
/// can check that the executor verifies what it gets.
#[derive(Default)]
pub struct MemoryPackages {
    objects: Mutex<HashMap<PackageDigest, Bytes>>,
    /// Calls of `get`.
    pub gets: AtomicU64,
}

impl MemoryPackages {
    /// Stores `bytes` under their digest; returns it.
    pub fn add(&self, bytes: Vec<u8>) -> PackageDigest {
        let digest = PackageDigest::of(&bytes);
        self.insert_unchecked(&digest, bytes);
        digest
    }

    /// Stores `bytes` under `digest` whether or not they match it.
    pub fn insert_unchecked(&self, digest: &PackageDigest, bytes: Vec<u8>) {
        self.objects
            .lock()
            .unwrap()
            .insert(digest.clone(), bytes.into());
    }

    /// Calls of `get` so far.
    pub fn get_count(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl PackageStore for MemoryPackages {
    async fn put(&self, digest: &PackageDigest, bytes: Bytes) -> Result<()> {
        digest.verify(&bytes)?;
        self.objects.lock().unwrap().insert(digest.clone(), bytes);
        Ok(())
    }

    async fn get(&self, digest: &PackageDigest) -> Result<Bytes> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        // Let concurrent callers pile up, as a remote store would.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        self.objects
            .lock()
            .unwrap()
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("package {digest} not found")))
    }

    async fn exists(&self, digest: &PackageDigest) -> Result<bool> {
        Ok(self.objects.lock().unwrap().contains_key(digest))
    }

    async fn delete(&self, digest: &PackageDigest) -> Result<()> {
        self.objects.lock().unwrap().remove(digest);
        Ok(())
    }
}

/// An embedded bus whose subscriptions record what they commit.
#[derive(Clone)]
pub struct RecordingBus {
    /// The bus.
    pub inner: EmbeddedBus,
    /// (topic, offset) of every commit, in order.
    pub commits: Arc<Mutex<Vec<(String, i64)>>>,
    /// The largest message it takes, as a broker's (and librdkafka's) `message.max.bytes`
    /// does: larger ones are refused as `Invalid`. Unbounded by default.
    pub max_message_bytes: Arc<std::sync::atomic::AtomicUsize>,
}

impl RecordingBus {
    pub fn new() -> Self {
        RecordingBus {
            inner: EmbeddedBus::new(4096),
            commits: Arc::default(),
            max_message_bytes: Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX)),
        }
    }

    /// Refuses messages above `bytes` from now on.
    pub fn limit_messages_to(&self, bytes: usize) {
        self.max_message_bytes
            .store(bytes, std::sync::atomic::Ordering::SeqCst);
    }

    /// Offsets committed on `topic`.
    pub fn committed(&self, topic: &str) -> Vec<i64> {
        let commits = self.commits.lock().unwrap();
        commits
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, o)| *o)
            .collect()
    }
}

#[async_trait]
impl EventBus for RecordingBus {
    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        let size = message.payload.len()
            + message.key.as_ref().map_or(0, String::len)
            + message
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if size > self.max_message_bytes() {
            return Err(fx_core::Error::invalid(format!(
                "message of {size} bytes is larger than message.max.bytes"
            )));
        }
        self.inner.publish(topic, message).await
    }

    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>> {
        let inner = self.inner.subscribe(topic, group).await?;
        Ok(Box::new(RecordingSubscription {
            inner,
            commits: self.commits.clone(),
        }))
    }
}

struct RecordingSubscription {
    inner: Box<dyn Subscription>,
    commits: Arc<Mutex<Vec<(String, i64)>>>,
}

#[async_trait]
impl Subscription for RecordingSubscription {
    async fn next(&mut self) -> Result<Option<Delivery>> {
        self.inner.next().await
    }

    async fn commit(&mut self, position: &Position) -> Result<()> {
        self.inner.commit(position).await?;
        self.commits
            .lock()
            .unwrap()
            .push((position.topic.clone(), position.offset));
        Ok(())
    }
}

/// A temporary directory, a package store with the examples, and a bus.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub packages: Arc<MemoryPackages>,
    pub bus: RecordingBus,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            packages: Arc::default(),
            bus: RecordingBus::new(),
        }
    }

    /// Stores `examples/dist/<name>.fxpkg`; returns its digest.
    pub fn add_example(&self, name: &str) -> PackageDigest {
        self.packages.add(example(name))
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// The executor's secrets directory (created on first use by the test that wants it).
    pub fn secrets_dir(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    /// A new executor on the fixture's store, bus and cache directory.
    pub fn executor(&self) -> Executor {
        self.executor_with(|_| {})
    }

    /// An executor whose settings `change` edits first.
    pub fn executor_with(&self, change: impl FnOnce(&mut ExecutorSettings)) -> Executor {
        let mut settings = ExecutorSettings {
            executor_id: "test-executor".into(),
            cache_dir: self.cache_dir(),
            secrets_dir: Some(self.secrets_dir()),
            ..ExecutorSettings::default()
        };
        change(&mut settings);
        Executor::new(settings, self.packages.clone(), Arc::new(self.bus.clone())).unwrap()
    }
}

/// An invocation of package `digest` for an event of `event_type`, with `limits` as the
/// handler's overrides.
pub fn invocation(
    digest: &PackageDigest,
    event_type: &str,
    id: &str,
    limits: LimitOverrides,
) -> Invocation {
    let event = new_json_event(id, "/tests", event_type, json!({"name": "test"})).unwrap();
    let handler = HandlerBuilder::new("h")
        .event_type(event_type)
        .package("p")
        .limits(limits.clone())
        .build();
    Invocation {
        execution_id: ExecutionId::for_event(&event, "h"),
        handler,
        package: ResolvedPackage {
            name: "p".into(),
            version: "1.0.0".into(),
            digest: digest.clone(),
        },
        event,
        attempt: 1,
        limits: Limits::resolve(&LimitOverrides::default(), &limits),
        dispatched_at: chrono::Utc::now(),
        attempt_base: 0,
        publish_output: true,
        trace: None,
        not_before: None,
        grants: Default::default(),
    }
}
