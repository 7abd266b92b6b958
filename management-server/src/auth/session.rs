//! Browser sessions: the web UI's sign-in keeps an API token in an `HttpOnly` cookie
//! (`fx_session`, `SameSite=Lax`, `Secure` behind TLS), and a request that changes something
//! with that cookie must come from this site (`Origin`, else `Referer`) and carry the session's
//! CSRF token: in the `X-CSRF-Token` header (htmx requests) or in a `_csrf` form field (plain
//! forms; the field is taken out of the body before the handler reads it). The token is a
//! hash of the session's token, readable by the page's script from the `fx_csrf` cookie and
//! worthless without the session cookie. Requests with `Authorization: Bearer` are not
//! cookie-borne, so they need neither.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONTENT_TYPE, COOKIE, HOST, ORIGIN, REFERER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The cookie holding the session's token.
pub const SESSION_COOKIE: &str = "fx_session";
/// The cookie the page's script reads the CSRF token from.
pub const CSRF_COOKIE: &str = "fx_csrf";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "_csrf";
/// The largest form body read to find its CSRF field.
const MAX_FORM_BYTES: usize = 1024 * 1024;

/// The value of cookie `name` in `headers`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// The CSRF token of the session whose token is `session`.
pub fn csrf_token(session: &str) -> String {
    let digest = Sha256::digest(format!("ferrisfx-csrf:{session}").as_bytes());
    hex::encode(&digest[..16])
}

/// Whether the request came over TLS (directly or, by its header, through a proxy).
pub fn is_secure(headers: &HeaderMap, always: bool) -> bool {
    always
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// Sets the session's cookies on `response`, to last `max_age` seconds.
pub fn set_cookies(response: &mut Response, session: &str, max_age: i64, secure: bool) {
    let secure = if secure { "; Secure" } else { "" };
    let cookies = [
        format!(
            "{SESSION_COOKIE}={session}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
        ),
        format!(
            "{CSRF_COOKIE}={}; Path=/; Max-Age={max_age}; SameSite=Strict{secure}",
            csrf_token(session)
        ),
    ];
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
}

/// Clears the session's cookies on `response`.
pub fn clear_cookies(response: &mut Response) {
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        if let Ok(value) =
            HeaderValue::from_str(&format!("{name}=; Path=/; Max-Age=0; SameSite=Lax"))
        {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(fx_core::ErrorKind::Forbidden, message)
}

/// Whether the request comes from this site: its `Origin` (else its `Referer`) names the host
/// it was sent to. A browser sends one of them with every form and script request.
pub fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| forbidden("the request names no Host"))?;
    let from = headers
        .get(ORIGIN)
        .or_else(|| headers.get(REFERER))
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            forbidden("a change made with a session cookie needs an Origin or Referer header")
        })?;
    let authority = url::Url::parse(from).ok().and_then(|url| {
        url.host_str().map(|h| match url.port() {
            Some(port) => format!("{h}:{port}"),
            None => h.to_string(),
        })
    });
    match authority {
        Some(authority) if authority.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(forbidden(format!(
            "cross-site request refused: it comes from {from}, not from {host}"
        ))),
    }
}

/// Checks the CSRF token of a cookie-borne request that changes something, and gives the
/// request back (a form body without its `_csrf` field).
pub async fn check_csrf(request: Request, session: &str) -> Result<Request, ApiError> {
    let expected = csrf_token(session);
    let matches = |given: &str| {
        use subtle::ConstantTimeEq;
        given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
    };
    if let Some(given) = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return if matches(given) {
            Ok(request)
        } else {
            Err(forbidden(
                "the X-CSRF-Token header is not this session's: reload the page",
            ))
        };
    }
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(forbidden(
            "a change made with a session cookie needs its CSRF token (X-CSRF-Token): reload the page",
        ));
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| ApiError::invalid("the form is over 1 MiB"))?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| ApiError::invalid(format!("the form does not parse: {e}")))?;
    let mut token = None;
    let mut kept = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        if key == CSRF_FIELD {
            token = Some(value);
        } else {
            kept.push((key, value));
        }
    }
    match token {
        Some(given) if matches(&given) => {
            let mut parts = parts;
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            let body = serde_urlencoded::to_string(&kept).unwrap_or_default();
            Ok(Request::from_parts(parts, Body::from(body)))
        }
        Some(_) => Err(forbidden(
            "the form's CSRF token is not this session's: reload the page",
        )),
        None => Err(forbidden(
            "the form has no CSRF token (_csrf): reload the page",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn cookies_are_found_by_name() {
        let h = headers(&[("cookie", "a=1; fx_session=fxt_x; b=2"), ("cookie", "c=3")]);
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("fxt_x"));
        assert_eq!(cookie(&h, "c").as_deref(), Some("3"));
        assert_eq!(cookie(&h, "fx"), None);
    }

    #[test]
    fn origins_must_name_this_host() {
        let ok = [
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ]),
            headers(&[
                ("host", "fx.example.com"),
                ("origin", "https://fx.example.com"),
            ]),
            headers(&[
                ("host", "fx.example.com"),
                ("referer", "https://fx.example.com/handlers"),
            ]),
        ];
        for h in ok {
            assert!(check_origin(&h).is_ok(), "{h:?}");
        }
        let refused = [
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:9090"),
            ]),
            headers(&[("host", "fx.example.com"), ("origin", "null")]),
            headers(&[("host", "fx.example.com")]),
        ];
        for h in refused {
            assert!(check_origin(&h).is_err(), "{h:?}");
        }
    }

    #[test]
    fn csrf_tokens_depend_on_the_session() {
        assert_eq!(csrf_token("a"), csrf_token("a"));
        assert_ne!(csrf_token("a"), csrf_token("b"));
        assert_eq!(csrf_token("a").len(), 32);
    }
}
