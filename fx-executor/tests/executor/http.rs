//! Outbound HTTP through `wasi:http`: only to the hosts the handler allows (for packages that
//! declare the capability), and never past the invocation's timeout.

use std::time::{Duration, Instant};

use cloudevents::AttributesReader;
use fx_core::execution::FailureKind;
use fx_core::handler::{Grants, LimitOverrides};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{invocation, Fixture};

/// A server on a free port answering every request with `200 hello`; or, when `silent`,
/// accepting connections and never answering.
async fn server(silent: bool) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                if silent {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
                    )
                    .await;
            });
        }
    });
    port
}

fn allowing(hosts: &[String]) -> Grants {
    Grants {
        http_allow: hosts.iter().cloned().collect(),
        ..Grants::default()
    }
}

async fn fetch(
    fx: &Fixture,
    url: &str,
    grants: Grants,
    limits: LimitOverrides,
) -> (Result<String, (FailureKind, String)>, Duration) {
    let digest = fx.add_example("misbehave");
    let mut inv = invocation(&digest, "fx.test.http-get", "h-1", limits);
    inv.event.set_data("text/plain", url.to_string());
    inv.grants = grants;
    let start = Instant::now();
    let outcome = fx.executor().invoke(&inv).await;
    let took = start.elapsed();
    let result = match outcome.result {
        Ok(events) => {
            assert_eq!(events[0].ty(), "fx.test.fetched");
            Ok(match events[0].data() {
                Some(cloudevents::Data::Binary(b)) => String::from_utf8(b.clone()).unwrap(),
                Some(cloudevents::Data::String(s)) => s.clone(),
                other => panic!("unexpected data {other:?}"),
            })
        }
        Err(f) => Err((f.kind, f.message)),
    };
    (result, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_leaves_only_for_a_host_the_handler_allows() {
    let fx = Fixture::new();
    let port = server(false).await;
    let url = format!("http://127.0.0.1:{port}/greeting");

    let (allowed, _) = fetch(
        &fx,
        &url,
        allowing(&[format!("127.0.0.1:{port}")]),
        Default::default(),
    )
    .await;
    assert_eq!(allowed, Ok("status 200: hello".to_string()));
    // A host without a port allows every port.
    let (any_port, _) = fetch(
        &fx,
        &url,
        allowing(&["127.0.0.1".into()]),
        Default::default(),
    )
    .await;
    assert_eq!(any_port, Ok("status 200: hello".to_string()));

    for grants in [
        Grants::default(),
        allowing(&[format!("127.0.0.1:{}", port.wrapping_add(1))]),
        allowing(&["localhost".into()]),
    ] {
        let (denied, _) = fetch(&fx, &url, grants.clone(), Default::default()).await;
        let text = denied.unwrap_or_else(|e| panic!("{grants:?}: {e:?}"));
        assert!(text.contains("HttpRequestDenied"), "{grants:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_server_that_never_answers_ends_with_the_invocation_timeout() {
    let fx = Fixture::new();
    let port = server(true).await;
    let url = format!("http://127.0.0.1:{port}/slow");
    let limits = LimitOverrides {
        timeout_ms: Some(500),
        ..Default::default()
    };
    let (outcome, took) = fetch(&fx, &url, allowing(&["127.0.0.1".into()]), limits).await;
    // The request gives up at the deadline; the function then finds its time is up.
    match &outcome {
        Err((FailureKind::Timeout, message)) => assert!(message.contains("500 ms"), "{message}"),
        Ok(text) => assert!(text.starts_with("error"), "{text}"),
        Err(other) => panic!("{other:?}"),
    }
    assert!(took < Duration::from_secs(5), "took {took:?}: {outcome:?}");
}
