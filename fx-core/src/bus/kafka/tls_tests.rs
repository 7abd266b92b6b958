//! The Kafka bus over TLS with a private CA, against a real broker: a tansu of the test's own
//! behind the tests' TLS-terminating proxy (tansu 0.6 takes `--cert` but its listener does not
//! answer a TLS handshake), advertising the proxy's address, so that the clients speak TLS to
//! every broker address the metadata gives them.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;
use crate::bus::{topics, EventBus};
use crate::event::Message;
use crate::testsupport::{eventually, unique, TestCertificates, TlsProxy};

/// A tansu reachable over TLS only; dropping it stops both.
struct TlsBroker {
    child: Child,
    proxy: TlsProxy,
    certificates: TestCertificates,
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsBroker {
    async fn start(test: &str) -> Option<TlsBroker> {
        let bin = crate::testenv::backend("FX_TEST_KAFKA_BIN", test)?;
        let certificates = TestCertificates::from_env(test)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let proxy = TlsProxy::start(&format!("http://127.0.0.1:{port}"), &certificates).await;
        let child = Command::new(bin)
            .args(["broker", "--listener-url"])
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{}", proxy.port()))
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu");
        eventually(
            &format!("tansu listens on port {port}"),
            Duration::from_secs(20),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        )
        .await;
        Some(TlsBroker {
            child,
            proxy,
            certificates,
        })
    }

    fn settings(&self, ca: &std::path::Path) -> KafkaSettings {
        let mut settings = KafkaSettings::new(format!("127.0.0.1:{}", self.proxy.port()));
        settings.topic_prefix = format!("{}-", unique("tls"));
        settings.partitions = 1;
        settings.security_protocol = SecurityProtocol::Ssl;
        settings.ca_file = Some(ca.to_path_buf());
        settings.connect_timeout_ms = 5_000;
        settings.delivery_timeout_ms = 5_000;
        settings
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_publishes_and_consumes_over_tls_with_a_private_ca() {
    let Some(broker) = TlsBroker::start("kafka over tls").await else {
        return;
    };
    let bus = KafkaBus::connect(broker.settings(&broker.certificates.ca))
        .await
        .unwrap();
    let mut sub = bus.subscribe(topics::EVENTS, "g").await.unwrap();
    let message = Message {
        key: Some("k".into()),
        headers: vec![],
        payload: b"over tls".to_vec(),
    };
    bus.publish(topics::EVENTS, message).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(60), sub.next())
        .await
        .expect("no message over tls before the deadline")
        .unwrap()
        .expect("a message");
    assert_eq!(delivery.message.payload, b"over tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_is_refused() {
    let Some(broker) = TlsBroker::start("kafka over tls, wrong ca").await else {
        return;
    };
    let bus = match KafkaBus::connect(broker.settings(&broker.certificates.other_ca)).await {
        Err(e) => {
            assert_eq!(e.kind(), crate::ErrorKind::Unavailable, "{e}");
            return;
        }
        Ok(bus) => bus,
    };
    let message = Message {
        key: None,
        headers: vec![],
        payload: b"never".to_vec(),
    };
    let e = bus.publish(topics::EVENTS, message).await.unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Unavailable, "{e}");
}
