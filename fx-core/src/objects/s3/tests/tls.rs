//! The store over TLS with a private CA (`ca_file`): the test server speaks plain HTTP, so a
//! TLS-terminating proxy with the test certificates stands in front of it.

use super::*;
use crate::testsupport::{TestCertificates, TlsProxy};

/// Settings for a fresh bucket on the test server behind a TLS proxy (returned too: it lives
/// as long as the test holds it), or `None` (skipped) without the server or the certificates.
async fn behind_tls(test: &str) -> Option<(S3Settings, TestCertificates, TlsProxy)> {
    let mut settings = settings(test)?;
    let certificates = TestCertificates::from_env(test)?;
    let proxy = TlsProxy::start(&settings.endpoint, &certificates).await;
    settings.endpoint = proxy.url();
    Some((settings, certificates, proxy))
}

#[tokio::test]
async fn packages_round_trip_over_https_with_a_private_ca() {
    let test = "s3::packages_round_trip_over_https_with_a_private_ca";
    let Some((mut settings, certificates, _proxy)) = behind_tls(test).await else {
        return;
    };
    settings.ca_file = Some(certificates.ca.clone());
    let store = S3PackageStore::open(&settings).await.unwrap();
    let bytes = Bytes::from(format!("an archive over tls {}", fresh_bucket_name()));
    let digest = PackageDigest::of(&bytes);
    store.put(&digest, bytes.clone()).await.unwrap();
    assert_eq!(store.get(&digest).await.unwrap(), bytes);
    // Everything else a store does, over TLS too.
    crate::objects::testsuite::run(&store).await;
}

#[tokio::test]
async fn a_certificate_signed_by_another_ca_is_refused_saying_so() {
    let test = "s3::a_certificate_signed_by_another_ca_is_refused_saying_so";
    let Some((mut settings, certificates, _proxy)) = behind_tls(test).await else {
        return;
    };
    settings.ca_file = Some(certificates.other_ca.clone());
    let err = S3PackageStore::open(&settings).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    let message = err.message();
    assert!(message.contains(&settings.endpoint), "{message}");
    assert!(message.contains("tls certificate"), "{message}");
    assert!(
        message.contains(&format!("ca_file {}", certificates.other_ca.display())),
        "{message}"
    );

    // Without ca_file, only the web PKI roots: the message says to set it.
    settings.ca_file = None;
    let err = S3PackageStore::open(&settings).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    assert!(err.message().contains("set ca_file"), "{}", err.chain());
}

#[tokio::test]
async fn a_ca_file_that_cannot_be_read_or_is_not_pem_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let base = S3Settings {
        endpoint: "https://127.0.0.1:9000".into(),
        ca_file: None,
        region: default_region(),
        bucket: "packages".into(),
        access_key: "fx".into(),
        secret_key: "s".into(),
        prefix: default_prefix(),
        create_bucket: true,
    };
    for &(file, contents, expected) in crate::tls::BAD_CA_FILES {
        let path = dir.path().join(file);
        if let Some(contents) = contents {
            std::fs::write(&path, contents).unwrap();
        }
        let settings = S3Settings {
            ca_file: Some(path.clone()),
            ..base.clone()
        };
        // The file is read before anything is sent.
        let err = S3PackageStore::open(&settings).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{}", err.chain());
        let message = err.message();
        assert!(
            message.contains(&format!("s3 ca_file {}", path.display())),
            "{message}"
        );
        assert!(message.contains(expected), "{message}");
    }
}
