//! Tests of [`crate::router`] over real embedded backends, one module per resource.

mod auth;
mod catalogue;
mod events;
mod executions;
mod handlers;
mod limits;
mod logs;
mod openapi;
mod packages;
mod pages;
mod pages_secrets;
mod retention;
mod secrets;
mod ui_forms;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use fx_core::backends::{BackendSettings, Backends};
use fx_core::package::{Manifest, PackageArchive};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::{router, AppState, ServerSettings};

/// The smallest valid component: the preamble with the component layer.
pub const EMPTY_COMPONENT: &[u8] = &[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
/// The smallest core module: what a build for the wrong target gives.
pub const EMPTY_MODULE: &[u8] = &[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/// The application over embedded backends in a temporary directory.
pub struct TestApp {
    /// The backends, to seed and inspect.
    pub backends: Backends,
    router: Router,
    state: AppState,
    _dir: std::sync::Arc<tempfile::TempDir>,
}

/// A response, read whole.
pub struct TestResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not json ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The message of an API error.
    pub fn error_message(&self) -> String {
        let json = self.json();
        json["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("not an api error: {json}"))
            .to_string()
    }

    #[track_caller]
    pub fn assert_status(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "body: {}", self.text());
        self
    }
}

/// The server's default settings with authentication off (as on a developer's machine): the
/// tests of everything but authentication.
pub fn open() -> ServerSettings {
    ServerSettings {
        auth: crate::auth::AuthSettings {
            enabled: false,
            ..crate::auth::AuthSettings::default()
        },
        ..ServerSettings::default()
    }
}

impl TestApp {
    pub async fn new() -> Self {
        TestApp::with_settings(open()).await
    }

    pub async fn with_settings(settings: ServerSettings) -> Self {
        TestApp::with_backends(settings, |backends| backends).await
    }

    /// The application over embedded backends changed by `adapt` (to inject failures).
    pub async fn with_backends(
        settings: ServerSettings,
        adapt: impl FnOnce(Backends) -> Backends,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backends = BackendSettings::default().build(dir.path()).await.unwrap();
        let backends = adapt(backends);
        let state = AppState::new(backends.clone(), settings);
        TestApp {
            backends,
            router: router(state.clone()),
            state,
            _dir: std::sync::Arc::new(dir),
        }
    }

    /// Another server over the same backends (its caches empty), with `settings`.
    pub fn another_server(&self, settings: ServerSettings) -> Self {
        let state = AppState::new(self.backends.clone(), settings);
        TestApp {
            backends: self.backends.clone(),
            router: router(state.clone()),
            state,
            _dir: self._dir.clone(),
        }
    }

    /// This application, sealing platform secrets with `keyring`.
    pub fn with_keyring(mut self, keyring: fx_core::secrets::Keyring) -> Self {
        self.state = self.state.with_keyring(Some(keyring));
        self.router = router(self.state.clone());
        self
    }

    /// Forgets the rules and tokens this server cached (as it does after changing them).
    pub fn state_auth_invalidate(&self) {
        self.state.auth.invalidate();
    }

    pub async fn call(&self, request: Request<Body>) -> TestResponse {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// The response with its body unread (for streams).
    pub async fn router_call_streaming(
        &self,
        request: Request<Body>,
    ) -> axum::http::Response<axum::body::Body> {
        self.router.clone().oneshot(request).await.unwrap()
    }

    pub async fn get(&self, uri: &str) -> TestResponse {
        self.call(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn send_json(&self, method: Method, uri: &str, body: &Value) -> TestResponse {
        self.call(
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    /// `POST /api/v1/packages` with the raw archive.
    pub async fn upload(&self, archive: Vec<u8>) -> TestResponse {
        self.call(
            Request::post("/api/v1/packages")
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(Body::from(archive))
                .unwrap(),
        )
        .await
    }

    /// Uploads `name@version` and checks that it was created.
    pub async fn upload_ok(&self, name: &str, version: &str) -> Value {
        let response = self.upload(package(name, version)).await;
        response.assert_status(StatusCode::CREATED);
        response.json()
    }

    /// Creates a handler of `package` on events of type `event_type`.
    pub async fn create_handler(&self, name: &str, package: &str, event_type: &str) -> Value {
        let response = self
            .send_json(
                Method::POST,
                "/api/v1/handlers",
                &handler_json(name, package, event_type),
            )
            .await;
        response.assert_status(StatusCode::CREATED);
        response.json()
    }
}

/// A bus whose messages hold at most `max` bytes, as Kafka's do (1 MB by default); it
/// publishes through the embedded bus it wraps.
pub struct SmallBus {
    pub inner: std::sync::Arc<dyn fx_core::bus::EventBus>,
    pub max: usize,
}

#[async_trait::async_trait]
impl fx_core::bus::EventBus for SmallBus {
    async fn publish(&self, topic: &str, message: fx_core::event::Message) -> fx_core::Result<()> {
        if message.payload.len() > self.max {
            return Err(fx_core::Error::invalid("message too large for the bus"));
        }
        self.inner.publish(topic, message).await
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
    ) -> fx_core::Result<Box<dyn fx_core::bus::Subscription>> {
        self.inner.subscribe(topic, group).await
    }

    fn max_message_bytes(&self) -> usize {
        self.max
    }
}

impl TestApp {
    /// The application over embedded backends whose bus carries messages of at most `max`
    /// bytes.
    pub async fn with_bus_limit(max: usize) -> Self {
        TestApp::with_backends(open(), |mut backends| {
            backends.bus = std::sync::Arc::new(SmallBus {
                inner: backends.bus.clone(),
                max,
            });
            backends
        })
        .await
    }
}

/// A manifest of `name@version`.
pub fn manifest(name: &str, version: &str) -> Manifest {
    Manifest::parse(&format!(
        "name = \"{name}\"\nversion = \"{version}\"\ndescription = \"the {name} function\"\n"
    ))
    .unwrap()
}

/// A valid package archive of `name@version`.
pub fn package(name: &str, version: &str) -> Vec<u8> {
    PackageArchive::build(&manifest(name, version), EMPTY_COMPONENT).unwrap()
}

/// A handler's JSON.
pub fn handler_json(name: &str, package: &str, event_type: &str) -> Value {
    serde_json::json!({
        "name": name,
        "filter": {"exact": {"attribute": "type", "value": event_type}},
        "package": {"name": package, "version": "latest"},
    })
}

/// A multipart form body with one file field, and its content type.
pub fn multipart(field: &str, file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "fx-test-boundary-7d1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"p.fxpkg\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
