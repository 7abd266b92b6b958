//! A client of a platform's HTTP API, whoever serves it: an in-process platform
//! ([`crate::TestPlatform`] dereferences to its client), the management server of a deployment
//! of processes, or one of several platforms; with the executions of a handler and the waits on
//! them that every end-to-end test uses.

use std::time::Duration;

use fx_core::handler::Handler;
use fx_core::testsupport::poll_until;
use serde_json::{json, Value};

/// A client of the HTTP API at `base`.
#[derive(Clone)]
pub struct Api {
    /// Base URL, e.g. `http://127.0.0.1:43117`.
    pub base: String,
    /// The HTTP client, for requests the methods below do not cover.
    pub http: reqwest::Client,
}

impl Api {
    /// A client of the API at `base`.
    pub fn new(base: impl Into<String>) -> Api {
        Api {
            base: base.into(),
            http: reqwest::Client::new(),
        }
    }

    /// A client of the API at `base` sending `Authorization: Bearer <token>` on every request.
    pub fn with_token(base: impl Into<String>, token: &str) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .expect("a token is a header value");
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        Api {
            base: base.into(),
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .expect("an HTTP client"),
        }
    }

    /// Sends `request` → (status, JSON body or its text as a JSON string).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` → (status, JSON or text as a JSON string).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    /// `GET path` → (status, body text).
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.http.put(self.url(path)).json(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(self.url(path))).await
    }

    /// `POST path` with raw bytes and headers.
    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    /// Uploads a package archive.
    pub async fn upload(&self, bytes: Vec<u8>) -> (u16, Value) {
        self.post_raw(
            "/api/v1/packages",
            &[("content-type", "application/octet-stream")],
            bytes,
        )
        .await
    }

    /// Uploads the example package `name` ([`crate::example_package`]), asserting 201.
    pub async fn upload_example(&self, name: &str) {
        let (status, v) = self.upload(crate::example_package(name)).await;
        assert_eq!(status, 201, "uploading {name}: {v}");
    }

    /// Creates `handler`, asserting 201; returns the answer (with the registry `revision`).
    pub async fn create_handler(&self, handler: &Handler) -> Value {
        let body = serde_json::to_value(handler).unwrap();
        let (status, v) = self.post_json("/api/v1/handlers", &body).await;
        assert_eq!(status, 201, "creating handler {}: {v}", handler.name);
        v
    }

    /// Creates a handler on events of `event_type`, asserting success.
    pub async fn handler(&self, name: &str, package: &str, event_type: &str, limits: Value) {
        let body = json!({
            "name": name,
            "filter": {"exact": {"attribute": "type", "value": event_type}},
            "package": {"name": package},
            "limits": limits,
        });
        let (status, v) = self.post_json("/api/v1/handlers", &body).await;
        assert_eq!(status, 201, "creating handler {name}: {v}");
    }

    /// Sends a structured-mode CloudEvent, asserting it was accepted.
    pub async fn emit(&self, id: &str, event_type: &str, data: Value) {
        let event = json!({
            "specversion": "1.0", "id": id, "source": "/tests", "type": event_type,
            "datacontenttype": "application/json", "data": data,
        });
        let (status, v) = self
            .post_raw(
                "/events",
                &[("content-type", "application/cloudevents+json")],
                event.to_string().into_bytes(),
            )
            .await;
        assert_eq!(status, 202, "event {id} refused: {v}");
    }

    /// Every execution that `query` selects (`handler`, `status`, …), newest first, paging by
    /// cursor.
    pub async fn list_executions(&self, query: &[(&str, &str)]) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut req = self
                .http
                .get(self.url("/api/v1/executions"))
                .query(query)
                .query(&[("limit", "500")]);
            if let Some(c) = &cursor {
                req = req.query(&[("cursor", c.as_str())]);
            }
            let (status, v) = self.send(req).await;
            assert_eq!(status, 200, "{v}");
            all.extend(v["items"].as_array().cloned().unwrap_or_default());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return all,
            }
        }
    }

    /// Every execution of `handler`, newest first.
    pub async fn executions(&self, handler: &str) -> Vec<Value> {
        self.list_executions(&[("handler", handler)]).await
    }

    /// The detail of execution `id` (the execution and its log lines), asserting 200.
    pub async fn execution(&self, id: &str) -> Value {
        let (status, detail) = self.get(&format!("/api/v1/executions/{id}")).await;
        assert_eq!(status, 200, "{detail}");
        detail
    }

    /// Waits until `handler` has `count` executions in a terminal state; returns their details.
    pub async fn wait_finished(
        &self,
        handler: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        let what = format!("{count} executions of {handler} finish");
        let done = poll_until(&what, timeout, Duration::from_millis(20), || async move {
            let items = self.executions(handler).await;
            let done: Vec<String> = items
                .iter()
                .filter(|e| matches!(e["status"].as_str(), Some("succeeded") | Some("failed")))
                .map(|e| e["id"].as_str().unwrap().to_string())
                .collect();
            if done.len() >= count {
                Ok(done)
            } else {
                Err(format!("{} finished: {items:#?}", done.len()))
            }
        })
        .await;
        let mut details = Vec::new();
        for id in done {
            details.push(self.get(&format!("/api/v1/executions/{id}")).await.1);
        }
        details
    }

    /// Waits until `count` executions of `handler` succeeded; returns every execution of it.
    /// A failure says how far it got, then `context()` (the logs of the processes, say).
    pub async fn wait_succeeded(
        &self,
        handler: &str,
        count: usize,
        timeout: Duration,
        context: impl Fn() -> String,
    ) -> Vec<Value> {
        let what = format!("{count} executions of {handler} succeed");
        let context = &context;
        poll_until(&what, timeout, Duration::from_millis(200), || async move {
            let all = self.executions(handler).await;
            let done = all.iter().filter(|e| e["status"] == "succeeded").count();
            if done >= count {
                Ok(all)
            } else {
                Err(format!(
                    "{done} succeeded ({} executions)\n{}",
                    all.len(),
                    context()
                ))
            }
        })
        .await
    }

    /// Waits until the execution of `handler` on event `event_id` succeeded.
    pub async fn wait_event_succeeded(&self, handler: &str, event_id: &str, timeout: Duration) {
        let what = format!("event {event_id} runs {handler} at {}", self.base);
        poll_until(&what, timeout, Duration::from_millis(20), || async move {
            let executions = self.executions(handler).await;
            let execution = executions.iter().find(|e| e["event_id"] == event_id);
            if execution.is_some_and(|e| e["status"] == "succeeded") {
                Ok(())
            } else {
                Err(format!("{executions:#?}"))
            }
        })
        .await
    }
}
