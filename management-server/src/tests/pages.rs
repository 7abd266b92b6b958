use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::json;

use super::executions::{fail_execution, seed_execution};
use super::*;

async fn page(app: &TestApp, uri: &str) -> String {
    let response = app.get(uri).await;
    response.assert_status(StatusCode::OK);
    assert!(
        response.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{uri} is not html"
    );
    response.text()
}

#[tokio::test]
async fn empty_platform_shows_how_to_get_started() {
    let app = TestApp::new().await;
    let html = page(&app, "/").await;
    assert!(html.contains("Getting started"));
    assert!(html.contains("No executions yet"));
    assert!(html.contains("/static/style.css"));
    for uri in ["/packages", "/handlers", "/executions"] {
        page(&app, uri).await;
    }
}

#[tokio::test]
async fn pages_show_packages_handlers_and_executions() {
    let app = TestApp::new().await;
    let uploaded = app.upload_ok("hello", "1.0.0").await;
    app.create_handler("greeter", "hello", "com.example.hello")
        .await;
    let id = seed_execution(&app, "greeter", "order-7", json!({"n": 7})).await;
    fail_execution(&app, &id, "greeter", "order 7 is cursed").await;

    let overview = page(&app, "/").await;
    assert!(!overview.contains("Getting started"));
    assert!(overview.contains(id.as_str()));
    assert!(overview.contains("status-failed"));

    let packages = page(&app, "/packages").await;
    let digest = uploaded["digest"].as_str().unwrap();
    assert!(packages.contains("hello"));
    assert!(packages.contains(&digest[..12]));
    assert!(packages.contains("latest → 1.0.0"));
    assert!(packages.contains("the hello function"));

    let handlers = page(&app, "/handlers").await;
    assert!(handlers.contains("greeter"));
    assert!(handlers.contains("hello@latest"));
    assert!(handlers.contains("&#34;exact&#34;"), "filter shown as json");
    assert!(handlers.contains("com.example.hello"));

    let detail = page(&app, &format!("/executions/{id}")).await;
    assert!(detail.contains("order 7 is cursed"));
    assert!(detail.contains("function error"));
    assert!(detail.contains("order service said no"));
    assert!(detail.contains("order=7"));
    assert!(detail.contains("&#34;n&#34;: 7"), "data pretty-printed");
    assert!(detail.contains("hello@1.0.0"));
}

#[tokio::test]
async fn executions_page_filters_and_links_to_the_next_page() {
    let app = TestApp::with_settings(ServerSettings {
        page_size: 2,
        ..open()
    })
    .await;
    for n in 0..3 {
        seed_execution(&app, "greeter", &format!("e-{n}"), json!({})).await;
    }
    seed_execution(&app, "other", "e-x", json!({})).await;

    let html = page(&app, "/executions?handler=greeter&status=").await;
    assert!(html.contains("<option value=\"greeter\" selected>"));
    assert_eq!(html.matches("class=\"badge status-").count(), 2);
    let end = html.find("\">next »</a>").expect("a next link");
    let start = html[..end].rfind("href=\"").unwrap() + "href=\"".len();
    let next = html[start..end].replace("&#38;", "&");
    assert!(next.contains("cursor="), "{next}");
    assert!(next.contains("handler=greeter"), "{next}");
    let second = page(&app, &next).await;
    assert_eq!(second.matches("class=\"badge status-").count(), 1);
    assert!(second.contains("« newest"));
    assert!(!second.contains("next »"));
    assert!(!second.contains(">other<"));

    let response = app.get("/executions?status=sleeping").await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(response.text().contains("sleeping"));
}

#[tokio::test]
async fn everything_shown_is_escaped() {
    let app = TestApp::new().await;
    let id = seed_execution(
        &app,
        "greeter",
        "<script>alert(1)</script>",
        json!({"html": "<b>hi</b>"}),
    )
    .await;
    let html = page(&app, &format!("/executions/{id}")).await;
    assert!(!html.contains("<script>alert(1)"));
    assert!(!html.contains("<b>hi</b>"));
    assert!(html.contains("&#60;script&#62;"));
}

#[tokio::test]
async fn upload_form_redirects_back_or_shows_the_reason() {
    let app = TestApp::new().await;
    let (content_type, body) = multipart("file", &package("hello", "1.0.0"));
    let response = app
        .call(
            Request::post("/packages")
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    response.assert_status(StatusCode::SEE_OTHER);
    let location = response.headers[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(location, "/packages?uploaded=hello%401.0.0");
    assert!(page(&app, &location).await.contains("uploaded hello@1.0.0"));

    let (content_type, body) = multipart("file", b"junk");
    let response = app
        .call(
            Request::post("/packages")
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(response.text().contains("Upload refused"));
    assert!(response.text().contains("gzipped tar"));
}

#[tokio::test]
async fn unknown_pages_health_and_stylesheet() {
    let app = TestApp::new().await;
    let missing = app.get("/nowhere").await;
    missing.assert_status(StatusCode::NOT_FOUND);
    assert!(missing.text().contains("no such path /nowhere"));

    let unknown = app
        .get(&format!(
            "/executions/{}",
            fx_core::execution::ExecutionId::derive("/s", "1", "h")
        ))
        .await;
    unknown.assert_status(StatusCode::NOT_FOUND);
    assert!(unknown.text().contains("does not exist"));

    let health = app.get("/healthz").await;
    health.assert_status(StatusCode::OK);
    assert_eq!(health.text(), "ok");

    let css = app.get("/static/style.css").await;
    css.assert_status(StatusCode::OK);
    assert_eq!(css.headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    assert!(css.text().contains(".badge"));
}
