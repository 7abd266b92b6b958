use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use fx_core::package::{PackageArchive, PackageDigest};
use serde_json::json;

use super::*;

/// Checks that nothing at all was stored: no version listed, no object under `digest`.
async fn assert_nothing_stored(app: &TestApp, bytes: &[u8]) {
    let list = app.get("/api/v1/packages").await;
    list.assert_status(StatusCode::OK);
    assert_eq!(list.json(), json!({"packages": []}));
    let digest = PackageDigest::of(bytes);
    assert!(!app.backends.packages.exists(&digest).await.unwrap());
}

#[tokio::test]
async fn valid_upload_is_created_stored_and_listed() {
    let app = TestApp::new().await;
    let archive = package("hello", "1.0.0");
    let response = app
        .call(
            Request::post("/api/v1/packages")
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header("x-fx-user", "ada")
                .body(Body::from(archive.clone()))
                .unwrap(),
        )
        .await;
    response.assert_status(StatusCode::CREATED);
    assert_eq!(response.headers[header::LOCATION], "/api/v1/packages/hello");
    let created = response.json();
    let digest = PackageDigest::of(&archive);
    assert_eq!(created["name"], "hello");
    assert_eq!(created["version"], "1.0.0");
    assert_eq!(created["digest"], digest.as_str());
    assert_eq!(created["size"], archive.len());
    assert_eq!(created["uploaded_by"], "ada");
    assert_eq!(created["manifest"]["description"], "the hello function");
    assert_eq!(app.backends.packages.get(&digest).await.unwrap(), archive);

    let list = app.get("/api/v1/packages").await;
    list.assert_status(StatusCode::OK);
    let packages = &list.json()["packages"];
    assert_eq!(packages[0]["name"], "hello");
    assert_eq!(packages[0]["versions"][0]["version"], "1.0.0");
    assert_eq!(packages[0]["aliases"], json!({"latest": "1.0.0"}));

    let one = app.get("/api/v1/packages/hello").await;
    one.assert_status(StatusCode::OK);
    assert_eq!(one.json(), packages[0]);
}

#[tokio::test]
async fn multipart_upload_reads_the_file_field() {
    let app = TestApp::new().await;
    let (content_type, body) = multipart("file", &package("hello", "1.0.0"));
    let response = app
        .call(
            Request::post("/api/v1/packages")
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    response.assert_status(StatusCode::CREATED);
    assert_eq!(response.json()["name"], "hello");

    let (content_type, body) = multipart("archive", &package("other", "1.0.0"));
    let response = app
        .call(
            Request::post("/api/v1/packages")
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(response.error_message().contains("no \"file\" field"));
}

#[tokio::test]
async fn garbage_upload_is_refused_and_nothing_stored() {
    let app = TestApp::new().await;
    let garbage = b"definitely not a package".to_vec();
    let response = app.upload(garbage.clone()).await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(response.json()["error"]["kind"], "invalid");
    assert!(
        response.error_message().contains("gzipped tar"),
        "{}",
        response.text()
    );
    assert_nothing_stored(&app, &garbage).await;
}

#[tokio::test]
async fn package_without_manifest_is_refused() {
    let app = TestApp::new().await;
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(EMPTY_COMPONENT.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "function.wasm", EMPTY_COMPONENT)
        .unwrap();
    let archive = tar.into_inner().unwrap().finish().unwrap();

    let response = app.upload(archive.clone()).await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        response.error_message().contains("no fx.toml"),
        "{}",
        response.text()
    );
    assert_nothing_stored(&app, &archive).await;
}

#[tokio::test]
async fn core_module_is_refused_as_not_a_component() {
    let app = TestApp::new().await;
    let archive = PackageArchive::build(&manifest("hello", "1.0.0"), EMPTY_MODULE).unwrap();
    let response = app.upload(archive.clone()).await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        response.error_message().contains("core WebAssembly module"),
        "{}",
        response.text()
    );
    assert_nothing_stored(&app, &archive).await;
}

#[tokio::test]
async fn oversized_uploads_are_refused_with_a_json_error() {
    let app = TestApp::with_settings(ServerSettings {
        max_package_bytes: 64,
        ..open()
    })
    .await;
    // A little over the limit: read whole, refused with the reason.
    let archive = package("hello", "1.0.0");
    assert!(archive.len() > 64);
    let response = app.upload(archive.clone()).await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        response.error_message().contains("over the limit"),
        "{}",
        response.text()
    );
    assert_nothing_stored(&app, &archive).await;

    // Far over the limit: cut off with 413, still in the API's error shape.
    let huge = vec![0u8; 64 + crate::routes::BODY_SLACK_BYTES as usize + 1];
    let response = app.upload(huge).await;
    response.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.json()["error"]["kind"], "invalid");
    assert!(
        response.error_message().contains("size limit"),
        "{}",
        response.text()
    );
}

#[tokio::test]
async fn an_existing_version_is_a_conflict_and_keeps_the_first_upload() {
    let app = TestApp::new().await;
    let first = app.upload_ok("hello", "1.0.0").await;

    let response = app.upload(package("hello", "1.0.0")).await;
    response.assert_status(StatusCode::CONFLICT);
    assert_eq!(response.json()["error"]["kind"], "conflict");
    assert!(
        response.error_message().contains("hello@1.0.0"),
        "{}",
        response.text()
    );

    // Other bytes under the same version: refused, and not stored.
    let mut other = manifest("hello", "1.0.0");
    other.description = "a different build".into();
    let other = PackageArchive::build(&other, EMPTY_COMPONENT).unwrap();
    app.upload(other.clone())
        .await
        .assert_status(StatusCode::CONFLICT);
    let digest = PackageDigest::of(&other);
    assert!(!app.backends.packages.exists(&digest).await.unwrap());

    let listed = app.get("/api/v1/packages/hello").await.json();
    assert_eq!(listed["versions"].as_array().unwrap().len(), 1);
    assert_eq!(listed["versions"][0]["digest"], first["digest"]);
}

#[tokio::test]
async fn aliases_move_between_versions_and_allow_rollback() {
    let app = TestApp::new().await;
    app.upload_ok("hello", "1.0.0").await;
    app.upload_ok("hello", "2.0.0").await;
    let aliases = |v: serde_json::Value| v["aliases"].clone();
    assert_eq!(
        aliases(app.get("/api/v1/packages/hello").await.json()),
        json!({"latest": "2.0.0"})
    );

    let response = app
        .send_json(
            Method::PUT,
            "/api/v1/packages/hello/aliases/latest",
            &json!({"version": "1.0.0"}),
        )
        .await;
    response.assert_status(StatusCode::OK);
    assert_eq!(
        response.json(),
        json!({"package": "hello", "alias": "latest", "version": "1.0.0"})
    );
    app.send_json(
        Method::PUT,
        "/api/v1/packages/hello/aliases/stable",
        &json!({"version": "2.0.0"}),
    )
    .await
    .assert_status(StatusCode::OK);
    assert_eq!(
        aliases(app.get("/api/v1/packages/hello").await.json()),
        json!({"latest": "1.0.0", "stable": "2.0.0"})
    );

    let missing = app
        .send_json(
            Method::PUT,
            "/api/v1/packages/hello/aliases/latest",
            &json!({"version": "9.9.9"}),
        )
        .await;
    missing.assert_status(StatusCode::NOT_FOUND);
    assert!(missing.error_message().contains("hello@9.9.9"));

    let bad_alias = app
        .send_json(
            Method::PUT,
            "/api/v1/packages/hello/aliases/1x",
            &json!({"version": "1.0.0"}),
        )
        .await;
    bad_alias.assert_status(StatusCode::BAD_REQUEST);
    assert!(bad_alias.error_message().contains("alias"));
}

#[tokio::test]
async fn malformed_json_is_a_400_with_the_parser_message() {
    let app = TestApp::new().await;
    app.upload_ok("hello", "1.0.0").await;
    let response = app
        .call(
            Request::put("/api/v1/packages/hello/aliases/stable")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"version\": "))
                .unwrap(),
        )
        .await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        response.error_message().contains("not valid json"),
        "{}",
        response.text()
    );
    assert!(
        response.error_message().contains("line 1"),
        "{}",
        response.text()
    );

    let response = app
        .send_json(
            Method::PUT,
            "/api/v1/packages/hello/aliases/stable",
            &json!({"version": "1.0.0", "extra": true}),
        )
        .await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        response.error_message().contains("unknown field `extra`"),
        "{}",
        response.text()
    );
}

#[tokio::test]
async fn unknown_package_and_unknown_api_path_are_json_404s() {
    let app = TestApp::new().await;
    let response = app.get("/api/v1/packages/nope").await;
    response.assert_status(StatusCode::NOT_FOUND);
    assert_eq!(response.json()["error"]["kind"], "not_found");

    let response = app.get("/api/v1/nothing-here").await;
    response.assert_status(StatusCode::NOT_FOUND);
    assert!(response.error_message().contains("/api/v1/nothing-here"));
}

/// A state store whose package metadata writes fail, as when the database is down.
struct MetadataDown(std::sync::Arc<dyn fx_core::store::StateStore>);

#[async_trait::async_trait]
impl fx_core::store::StateStore for MetadataDown {
    async fn add_package_version(
        &self,
        _: &fx_core::package::PackageVersion,
    ) -> fx_core::Result<()> {
        Err(fx_core::Error::unavailable(
            "writing package metadata: database is down",
        ))
    }
    async fn list_package_versions(
        &self,
        name: Option<&str>,
    ) -> fx_core::Result<Vec<fx_core::package::PackageVersion>> {
        self.0.list_package_versions(name).await
    }
    async fn get_package_version(
        &self,
        name: &str,
        version: &str,
    ) -> fx_core::Result<Option<fx_core::package::PackageVersion>> {
        self.0.get_package_version(name, version).await
    }
    async fn set_alias(&self, name: &str, alias: &str, version: &str) -> fx_core::Result<()> {
        self.0.set_alias(name, alias, version).await
    }
    async fn list_aliases(
        &self,
        name: &str,
    ) -> fx_core::Result<Vec<fx_core::package::PackageAlias>> {
        self.0.list_aliases(name).await
    }
    async fn resolve_package(
        &self,
        reference: &fx_core::handler::PackageRef,
    ) -> fx_core::Result<fx_core::package::PackageVersion> {
        self.0.resolve_package(reference).await
    }
    async fn create_execution(
        &self,
        execution: &fx_core::execution::Execution,
    ) -> fx_core::Result<fx_core::store::Created> {
        self.0.create_execution(execution).await
    }
    async fn apply_state(&self, event: &fx_core::execution::StateEvent) -> fx_core::Result<()> {
        self.0.apply_state(event).await
    }
    async fn transition(
        &self,
        id: &fx_core::execution::ExecutionId,
        attempts: u32,
        from: fx_core::execution::ExecutionStatus,
        to: fx_core::execution::ExecutionStatus,
    ) -> fx_core::Result<bool> {
        self.0.transition(id, attempts, from, to).await
    }
    async fn expired_executions(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> fx_core::Result<Vec<fx_core::execution::ExecutionId>> {
        self.0.expired_executions(before, limit).await
    }
    async fn delete_executions(
        &self,
        ids: &[fx_core::execution::ExecutionId],
    ) -> fx_core::Result<u64> {
        self.0.delete_executions(ids).await
    }
    async fn get_execution(
        &self,
        id: &fx_core::execution::ExecutionId,
    ) -> fx_core::Result<Option<fx_core::execution::Execution>> {
        self.0.get_execution(id).await
    }
    async fn list_executions(
        &self,
        query: &fx_core::execution::ExecutionQuery,
    ) -> fx_core::Result<fx_core::execution::Page<fx_core::execution::ExecutionSummary>> {
        self.0.list_executions(query).await
    }
    async fn record_handler_change(
        &self,
        change: &fx_core::store::HandlerChange,
    ) -> fx_core::Result<()> {
        self.0.record_handler_change(change).await
    }
    async fn handler_history(
        &self,
        name: &str,
    ) -> fx_core::Result<Vec<fx_core::store::HandlerChange>> {
        self.0.handler_history(name).await
    }
}

#[tokio::test]
async fn failed_metadata_write_leaves_no_bytes_behind() {
    let app = TestApp::with_backends(open(), |mut backends| {
        backends.state = std::sync::Arc::new(MetadataDown(backends.state));
        backends
    })
    .await;
    let archive = package("hello", "1.0.0");
    let response = app.upload(archive.clone()).await;
    response.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.json()["error"]["kind"], "unavailable");
    assert!(
        response.error_message().contains("database is down"),
        "{}",
        response.text()
    );
    assert_nothing_stored(&app, &archive).await;
}
