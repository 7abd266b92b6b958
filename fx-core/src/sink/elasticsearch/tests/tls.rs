//! The sink over TLS with a private CA (`ca_file`): the test server speaks plain HTTP, so a
//! TLS-terminating proxy with the test certificates stands in front of it.

use super::*;
use crate::testsupport::{TestCertificates, TlsProxy};

/// Settings for the test server behind a TLS proxy (returned too: it lives as long as the
/// test holds it), or `None` (skipped) without the server or the certificates.
async fn behind_tls(test: &str) -> Option<(ElasticsearchSettings, TestCertificates, TlsProxy)> {
    let upstream = crate::testenv::backend("FX_TEST_ELASTICSEARCH", test)?;
    let certificates = TestCertificates::from_env(test)?;
    let proxy = TlsProxy::start(&upstream, &certificates).await;
    let settings = quick(ElasticsearchSettings::new(proxy.url()));
    Some((settings, certificates, proxy))
}

#[tokio::test]
async fn the_sink_writes_and_reads_back_over_https_with_a_private_ca() {
    let test = "elasticsearch::the_sink_writes_and_reads_back_over_https_with_a_private_ca";
    let Some((mut settings, certificates, _proxy)) = behind_tls(test).await else {
        return;
    };
    settings.ca_file = Some(certificates.ca.clone());
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    assert_eq!(sink.unavailable_total(), 0);
    let id = execution("over-tls");
    let lines: Vec<LogLine> = (0..3).map(|seq| line(&id, 1, seq)).collect();
    sink.write_logs(&lines).await.unwrap();
    flushed(&sink).await;
    assert_eq!(sink.buffered(), 0);
    // Read back from the cluster alone (the buffer is empty), over TLS as well.
    assert_eq!(sink.execution_logs(&id).await.unwrap(), lines);
    let query = json!({ "term": { "execution_id": id.as_str() } });
    assert_eq!(count(&sink.cluster, Family::Logs, query).await, 3);
}

#[tokio::test]
async fn a_certificate_signed_by_another_ca_is_refused_saying_so() {
    let test = "elasticsearch::a_certificate_signed_by_another_ca_is_refused_saying_so";
    let Some((mut settings, certificates, _proxy)) = behind_tls(test).await else {
        return;
    };
    settings.ca_file = Some(certificates.other_ca.clone());
    let cluster = Cluster::new(&settings).unwrap();
    let err = cluster.install_templates().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    let message = err.message();
    assert!(message.contains("tls certificate"), "{message}");
    assert!(
        message.contains(&format!("ca_file {}", certificates.other_ca.display())),
        "{message}"
    );
    // The sink still starts (the cluster may be fixed later) and says why reads fail.
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    let err = sink
        .execution_logs(&execution("refused"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    assert!(err.message().contains("tls certificate"), "{err}");

    // Without ca_file, only the web PKI roots: the message says to set it.
    settings.ca_file = None;
    let err = Cluster::new(&settings)
        .unwrap()
        .install_templates()
        .await
        .unwrap_err();
    assert!(err.message().contains("set ca_file"), "{}", err.chain());
}

#[tokio::test]
async fn a_ca_file_that_cannot_be_read_or_is_not_pem_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    for &(file, contents, expected) in crate::tls::BAD_CA_FILES {
        let path = dir.path().join(file);
        if let Some(contents) = contents {
            std::fs::write(&path, contents).unwrap();
        }
        let mut settings = ElasticsearchSettings::new("https://127.0.0.1:9200");
        settings.ca_file = Some(path.clone());
        // The file is read before anything is sent.
        let err = ElasticsearchSink::open(&settings).await.err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{}", err.chain());
        let message = err.message();
        assert!(
            message.contains(&format!("elasticsearch ca_file {}", path.display())),
            "{message}"
        );
        assert!(message.contains(expected), "{message}");
    }
}
