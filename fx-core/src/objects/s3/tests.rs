use super::*;
use crate::error::ErrorKind;
use crate::testsupport::unique;

mod tls;

/// Settings for a fresh bucket on the test server, or `None` (skipped) without one.
fn settings(test: &str) -> Option<S3Settings> {
    let endpoint = crate::testenv::backend("FX_TEST_S3_ENDPOINT", test)?;
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("{name} must be set with FX_TEST_S3_ENDPOINT"))
    };
    Some(S3Settings {
        endpoint,
        ca_file: None,
        region: default_region(),
        bucket: fresh_bucket_name(),
        access_key: var("FX_TEST_S3_ACCESS_KEY"),
        secret_key: var("FX_TEST_S3_SECRET_KEY"),
        prefix: default_prefix(),
        create_bucket: true,
    })
}

fn fresh_bucket_name() -> String {
    unique("fx-test")
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let Some(settings) = settings("s3::passes_the_conformance_suite") else {
        return;
    };
    let store = S3PackageStore::open(&settings).await.unwrap();
    crate::objects::testsuite::run(&store).await;
}

#[tokio::test]
async fn archives_over_8_mib_round_trip_through_a_multipart_upload() {
    let Some(settings) = settings("s3::archives_over_8_mib_round_trip_through_a_multipart_upload")
    else {
        return;
    };
    let store = S3PackageStore::open(&settings).await.unwrap();
    let mut bytes = fresh_bucket_name().into_bytes();
    bytes.extend((0..9 * 1024 * 1024).map(|i: u32| (i % 253) as u8));
    let bytes = Bytes::from(bytes);
    assert!(bytes.len() > STREAMING_THRESHOLD);
    let digest = PackageDigest::of(&bytes);

    store.put(&digest, bytes.clone()).await.unwrap();
    let (head, status) = store
        .bucket
        .head_object(store.key_of(&digest))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(head.content_length, Some(bytes.len() as i64));
    let etag = head.e_tag.unwrap_or_default();
    assert!(
        etag.trim_matches('"').ends_with("-2"),
        "a two-part upload's etag: {etag}"
    );
    assert_eq!(store.get(&digest).await.unwrap(), bytes);
    // Already there: a second put is a no-op.
    store.put(&digest, bytes.clone()).await.unwrap();
    store.delete(&digest).await.unwrap();
    assert!(!store.exists(&digest).await.unwrap());
}

#[tokio::test]
async fn keys_hold_the_prefix_shard_and_digest() {
    let Some(settings) = settings("s3::keys_hold_the_prefix_shard_and_digest") else {
        return;
    };
    let store = S3PackageStore::open(&settings).await.unwrap();
    let bytes = Bytes::from(fresh_bucket_name());
    let digest = PackageDigest::of(&bytes);
    store.put(&digest, bytes.clone()).await.unwrap();
    let key = format!(
        "packages/{}/{}.fxpkg",
        &digest.as_str()[..2],
        digest.as_str()
    );
    assert_eq!(store.key_of(&digest), key);
    let raw = store.bucket.get_object(&key).await.unwrap();
    assert_eq!(raw.status_code(), 200);
    assert_eq!(raw.bytes(), &bytes);
}

#[tokio::test]
async fn a_wrong_secret_key_is_refused_clearly() {
    let Some(mut settings) = settings("s3::a_wrong_secret_key_is_refused_clearly") else {
        return;
    };
    // The bucket exists, so the failure is the signature, not a missing bucket.
    S3PackageStore::open(&settings).await.unwrap();
    settings.secret_key.push_str("-wrong");
    let err = S3PackageStore::open(&settings).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    assert!(err.message().contains("refused the credentials"), "{err}");
    assert!(err.message().contains("SignatureDoesNotMatch"), "{err}");
    assert!(err.message().contains(&settings.endpoint), "{err}");
    assert!(
        !err.chain().contains(&settings.secret_key),
        "{}",
        err.chain()
    );
}

#[tokio::test]
async fn a_server_that_is_down_is_unavailable_naming_the_endpoint() {
    let Some(mut settings) =
        settings("s3::a_server_that_is_down_is_unavailable_naming_the_endpoint")
    else {
        return;
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    settings.endpoint = format!("http://127.0.0.1:{port}");
    let err = S3PackageStore::open(&settings).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    assert!(err.message().contains(&settings.endpoint), "{err}");
}

#[tokio::test]
async fn a_tampered_object_is_never_handed_out() {
    let Some(settings) = settings("s3::a_tampered_object_is_never_handed_out") else {
        return;
    };
    let store = S3PackageStore::open(&settings).await.unwrap();
    let bytes = Bytes::from(format!("the real archive {}", fresh_bucket_name()));
    let digest = PackageDigest::of(&bytes);
    store.put(&digest, bytes.clone()).await.unwrap();

    let mut tampered = bytes.to_vec();
    tampered[0] = b'T';
    let key = store.key_of(&digest);
    store.bucket.put_object(&key, &tampered).await.unwrap();
    let err = store.get(&digest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().contains("do not match the digest"), "{err}");
    assert!(err.message().contains(digest.as_str()), "{err}");

    // Storing the right bytes again repairs an object of the wrong size.
    store.bucket.put_object(&key, b"truncated").await.unwrap();
    store.put(&digest, bytes.clone()).await.unwrap();
    assert_eq!(store.get(&digest).await.unwrap(), bytes);
}

#[tokio::test]
async fn a_missing_bucket_is_not_found_without_create_bucket() {
    let Some(mut settings) = settings("s3::a_missing_bucket_is_not_found_without_create_bucket")
    else {
        return;
    };
    settings.create_bucket = false;
    let err = S3PackageStore::open(&settings).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{}", err.chain());
    assert!(err.message().contains(&settings.bucket), "{err}");
}

#[test]
fn settings_reject_unknown_fields_and_redact_the_secret() {
    let settings: S3Settings = toml::from_str(
        r#"
        endpoint = "http://127.0.0.1:9000"
        bucket = "packages"
        access_key = "fx"
        secret_key = "very-secret"
        "#,
    )
    .unwrap();
    assert_eq!(settings.region, "us-east-1");
    assert_eq!(settings.prefix, "packages/");
    assert!(settings.create_bucket);
    settings.validate().unwrap();
    let debug = format!("{settings:?}");
    assert!(!debug.contains("very-secret"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");

    let unknown = toml::from_str::<S3Settings>(
        r#"
        endpoint = "http://127.0.0.1:9000"
        bucket = "packages"
        access_key = "fx"
        secret_key = "s"
        path_style = false
        "#,
    );
    assert!(unknown.is_err());
}

#[test]
fn the_package_store_setting_selects_s3_by_kind() {
    use crate::backends::{BackendSettings, PackageStoreSettings};
    let settings: BackendSettings = toml::from_str(
        r#"
        [packages]
        kind = "s3"
        endpoint = "http://minio:9000"
        bucket = "fx-packages"
        access_key = "fx"
        secret_key = "very-secret"
        create_bucket = false
        "#,
    )
    .unwrap();
    let PackageStoreSettings::S3(s3) = &settings.packages else {
        panic!("not s3: {settings:?}");
    };
    assert_eq!(s3.endpoint, "http://minio:9000");
    assert!(!s3.create_bucket);
    assert!(!format!("{settings:?}").contains("very-secret"));
    let typo = toml::from_str::<BackendSettings>(
        "[packages]\nkind = \"s3\"\nendpoint = \"http://m\"\nbucket = \"b\"\naccess_key = \"a\"\nsecret_key = \"s\"\nbuckets = \"x\"\n",
    );
    assert!(typo.is_err());
}

#[test]
fn invalid_settings_are_refused_before_connecting() {
    let good = S3Settings {
        endpoint: "http://127.0.0.1:9000".into(),
        ca_file: None,
        region: default_region(),
        bucket: "packages".into(),
        access_key: "fx".into(),
        secret_key: "s".into(),
        prefix: default_prefix(),
        create_bucket: true,
    };
    for bad in [
        S3Settings {
            endpoint: "127.0.0.1:9000".into(),
            ..good.clone()
        },
        S3Settings {
            bucket: "Packages_1".into(),
            ..good.clone()
        },
        S3Settings {
            secret_key: String::new(),
            ..good.clone()
        },
        S3Settings {
            prefix: "/packages/".into(),
            ..good.clone()
        },
        // A CA checks an https:// server's certificate; with http:// it is a mistake.
        S3Settings {
            ca_file: Some("/etc/ferrisfx/s3-ca.pem".into()),
            ..good.clone()
        },
    ] {
        assert_eq!(
            bad.validate().unwrap_err().kind(),
            ErrorKind::Invalid,
            "{bad:?}"
        );
    }
}

#[test]
fn error_codes_are_read_from_s3_error_documents() {
    let body = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>x</Message></Error>";
    assert_eq!(xml_element(body, "Code"), Some("SignatureDoesNotMatch"));
    assert_eq!(xml_element("", "Code"), None);
    let started = "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>abc-1</UploadId></InitiateMultipartUploadResult>";
    assert_eq!(xml_element(started, "UploadId"), Some("abc-1"));
}
