//! The OpenAPI document against the router it describes.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};

use super::*;
use crate::openapi::OPERATIONS;

#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let app = TestApp::new().await;
    let doc = app.get("/api/openapi.json").await;
    doc.assert_status(StatusCode::OK);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    // The document holds exactly the operations listed.
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let listed: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, listed);

    // Every route of the API module is in the list (read from its source, which names each).
    let source = include_str!("../routes/mod.rs");
    for piece in source.split(".route(\"").skip(1) {
        let path = piece.split('"').next().unwrap();
        let full = format!("/api/v1{path}");
        assert!(
            listed.iter().any(|(_, p)| *p == full),
            "route {full} is not in the OpenAPI document"
        );
    }

    // Every documented operation is served: not the unknown-path fallback, not 405.
    for (method, path) in OPERATIONS {
        let uri = path
            .replace("{name}", "nosuch")
            .replace("{alias}", "latest")
            .replace("{id}", "00000000000000000000000000000000");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = app
            .call(
                Request::builder()
                    .method(method.clone())
                    .uri(&uri)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await;
        assert_ne!(
            response.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}"
        );
        assert!(
            !response.text().contains("no such path"),
            "{method} {uri} is documented but not routed"
        );
    }
}

#[tokio::test]
async fn api_docs_viewer_is_served_from_the_binary() {
    let app = TestApp::new().await;
    let page = app.get("/api/docs").await;
    page.assert_status(StatusCode::OK);
    assert!(page.text().contains("/api/openapi.json"));
    assert!(!page.text().contains("https://"), "no CDN");
    let script = app.get("/api/docs/rapidoc.js").await;
    script.assert_status(StatusCode::OK);
    assert_eq!(script.headers[header::CONTENT_ENCODING], "gzip");
    assert!(script.body.len() > 100_000);
}
