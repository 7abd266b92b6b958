//! Outbound HTTP through `wasi:http`: only to the hosts the handler allows (for packages that
//! declare the capability), and never past the invocation's timeout.

use std::time::{Duration, Instant};

use cloudevents::AttributesReader;
use fx_core::execution::FailureKind;
use fx_core::grants::Grants;
use fx_core::limits::LimitOverrides;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{invocation, Fixture};

/// How a test server answers.
#[derive(Clone, Copy)]
enum Answer {
    /// `200 hello`.
    Hello,
    /// Accepts the connection and never answers.
    Silent,
    /// Sends the headers and the first 5 of 100 bytes of the body, then stalls.
    StallsMidBody,
}

/// A server on a free port answering every request as `answer` says.
async fn server(answer: Answer) -> u16 {
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
                let reply: &[u8] = match answer {
                    Answer::Hello => {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello"
                    }
                    Answer::Silent => b"",
                    Answer::StallsMidBody => {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\nhello"
                    }
                };
                let _ = conn.write_all(reply).await;
                if !matches!(answer, Answer::Hello) {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
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

/// Fetches `url` from a function on an executor whose operator allows loopback (the test
/// servers listen there).
async fn fetch(
    fx: &Fixture,
    url: &str,
    grants: Grants,
    limits: LimitOverrides,
) -> (Result<String, (FailureKind, String)>, Duration) {
    fetch_allowing_networks(fx, url, grants, limits, &["127.0.0.0/8"]).await
}

/// Fetches `url` from a function on an executor allowing `networks` although internal.
async fn fetch_allowing_networks(
    fx: &Fixture,
    url: &str,
    grants: Grants,
    limits: LimitOverrides,
    networks: &[&str],
) -> (Result<String, (FailureKind, String)>, Duration) {
    call(fx, "fx.test.http-get", url, grants, limits, networks).await
}

/// Runs `misbehave`'s function `ty` (one of its HTTP ones) on `url`: what it returned (the text
/// of its `fx.test.fetched` event) or how it failed, and how long the invocation took.
async fn call(
    fx: &Fixture,
    ty: &str,
    url: &str,
    grants: Grants,
    limits: LimitOverrides,
    networks: &[&str],
) -> (Result<String, (FailureKind, String)>, Duration) {
    let digest = fx.add_example("misbehave");
    let mut inv = invocation(&digest, ty, "h-1", limits);
    inv.event.set_data("text/plain", url.to_string());
    inv.grants = grants;
    let start = Instant::now();
    let networks = networks.iter().map(|n| n.parse().unwrap()).collect();
    let outcome = fx
        .executor_with(|s| s.http_allow_networks = networks)
        .invoke(&inv)
        .await;
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
    let port = server(Answer::Hello).await;
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

/// Runs `misbehave`'s function `ty` on `path` of a server answering as `answer`, with a 500 ms
/// timeout: the invocation ends in time, as a timeout, or with the function's own error when
/// a bound on the request itself (its timeouts are capped at the time left) came first.
async fn ends_in_time(ty: &str, answer: Answer, path: &str) {
    let fx = Fixture::new();
    let port = server(answer).await;
    let url = format!("http://127.0.0.1:{port}{path}");
    let limits = LimitOverrides {
        timeout_ms: Some(500),
        ..Default::default()
    };
    let grants = allowing(&["127.0.0.1".into()]);
    let (outcome, took) = call(&fx, ty, &url, grants, limits, &["127.0.0.0/8"]).await;
    match &outcome {
        Err((FailureKind::Timeout, message)) => assert!(message.contains("500 ms"), "{message}"),
        Ok(text) => assert!(text.starts_with("error"), "{text}"),
        Err(other) => panic!("{other:?}"),
    }
    assert!(took < Duration::from_secs(5), "took {took:?}: {outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_server_that_never_answers_ends_with_the_invocation_timeout() {
    // The request gives up at the deadline; the function then finds its time is up.
    ends_in_time("fx.test.http-get", Answer::Silent, "/slow").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_that_stalls_ends_with_the_invocation_timeout() {
    // The function reads the body with `blocking-read` (a `wasi:io/streams` wait, not a poll):
    // the server sends 5 of the 100 bytes it announced and stalls. Two bounds hold here: the
    // request's between-bytes timeout is capped at the invocation's time left, and the stream
    // wait itself ends at the deadline.
    ends_in_time("fx.test.http-get", Answer::StallsMidBody, "/stalls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_to_a_server_that_never_reads_ends_with_the_invocation_timeout() {
    // 64 MiB written with `blocking-write-and-flush` (a `wasi:io/streams` wait) to a server that
    // accepts the connection and never reads: the socket's buffers fill and the write blocks.
    // Two bounds race: the stream wait ends at the deadline, and the request's first-byte
    // timeout, capped at the time left, closes the body stream.
    ends_in_time("fx.test.http-upload", Answer::Silent, "/upload").await;
}

/// A server on a free port answering every request with a redirect to `location`.
async fn redirecting(location: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let location = location.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let answer = format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 5\r\nconnection: close\r\n\r\nmoved");
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

/// A host in `http_allow` does not open the inside: loopback, private and link-local (cloud
/// metadata) addresses are refused unless the operator allows the network, whether named by
/// an IP or by a name that resolves there, and redirects are not followed by the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_addresses_are_refused_unless_the_operator_allows_their_network() {
    let fx = Fixture::new();
    let port = server(Answer::Hello).await;
    for (host, allow) in [
        (format!("127.0.0.1:{port}"), "127.0.0.1".to_string()),
        (format!("localhost:{port}"), "localhost".to_string()),
        ("169.254.169.254".to_string(), "169.254.169.254".to_string()),
        ("10.0.0.1:8080".to_string(), "10.0.0.1".to_string()),
        (
            format!("[::ffff:127.0.0.1]:{port}"),
            "[::ffff:127.0.0.1]".to_string(),
        ),
    ] {
        let url = format!("http://{host}/latest/meta-data/");
        let limits = LimitOverrides {
            timeout_ms: Some(5_000),
            ..Default::default()
        };
        let (outcome, took) = fetch_allowing_networks(
            &fx,
            &url,
            allowing(std::slice::from_ref(&allow)),
            limits,
            &[],
        )
        .await;
        let text = outcome.unwrap_or_else(|e| panic!("{url}: {e:?}"));
        assert!(text.contains("DestinationIpProhibited"), "{url}: {text}");
        assert!(took < Duration::from_secs(4), "{url} took {took:?}");
    }
    // The operator allows loopback: the same request goes through.
    let (allowed, _) = fetch_allowing_networks(
        &fx,
        &format!("http://localhost:{port}/"),
        allowing(&["localhost".into()]),
        Default::default(),
        &["127.0.0.0/8", "::1/128"],
    )
    .await;
    assert_eq!(allowed, Ok("status 200: hello".to_string()));
    // A redirect is handed to the function as it is; nothing follows it to the metadata host.
    let hop = redirecting("http://169.254.169.254/latest/meta-data/".into()).await;
    let (redirected, _) = fetch(
        &fx,
        &format!("http://127.0.0.1:{hop}/"),
        allowing(&["127.0.0.1".into()]),
        Default::default(),
    )
    .await;
    assert_eq!(redirected, Ok("status 302: moved".to_string()));
}
