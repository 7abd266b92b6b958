//! The API's one error type and the extractors whose rejections use it.
//!
//! Every failure of the REST API answers with a status from the error's kind (one table,
//! [`status_of`]) and the body `{"error": {"kind": "...", "message": "..."}}`, the message being
//! the error's full chain.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fx_core::{Error, ErrorKind};
use serde::de::DeserializeOwned;

/// The HTTP status of each error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
    }
}

/// An error answered by the REST API (and, rendered as a page, by the web UI).
#[derive(Debug)]
pub struct ApiError {
    /// The status answered: the kind's, or a more precise one (413 for a body over the limit).
    pub status: StatusCode,
    /// The kind of error.
    pub kind: ErrorKind,
    /// The message with every cause.
    pub message: String,
    /// The request field it is about, when one is (`secrets`, `limits`, ...): the web UI shows
    /// the message next to that field.
    pub field: Option<&'static str>,
}

impl ApiError {
    /// An error of `kind` answered with that kind's status.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            status: status_of(kind),
            kind,
            message: message.into(),
            field: None,
        }
    }

    /// The same error, about request field `field`.
    pub fn on_field(self, field: &'static str) -> Self {
        ApiError {
            field: Some(field),
            ..self
        }
    }

    /// A 400 `invalid` error.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::Invalid, message)
    }

    /// A 404 `not_found` error.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::NotFound, message)
    }

    /// A 409 `conflict` error.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::Conflict, message)
    }

    /// An error from an extractor's rejection: its status, its text, kind `invalid` for a 4xx.
    fn from_rejection(status: StatusCode, text: String) -> Self {
        let kind = if status.is_client_error() {
            ErrorKind::Invalid
        } else {
            ErrorKind::Internal
        };
        ApiError {
            status,
            kind,
            message: text,
            field: None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        ApiError::new(err.kind(), err.chain())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        let text = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body is over the size limit".to_string()
        } else {
            format!("reading the request body: {}", rejection.body_text())
        };
        ApiError::from_rejection(status, text)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::from_rejection(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::from_rejection(rejection.status(), rejection.body_text())
    }
}

/// The JSON body of an error.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(serde::Serialize)]
struct ErrorDetail<'a> {
    kind: ErrorKind,
    message: &'a str,
}

impl ApiError {
    /// The response of a request refused by a bound of the server (load shedding): logged at
    /// debug level only, since under overload there is one per request and the
    /// `fx_server_busy_total` metric counts them.
    pub fn shed(self) -> Response {
        tracing::debug!(status = %self.status, kind = %self.kind, error = %self.message, "request shed");
        self.body()
    }

    fn body(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind,
                message: &self.message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, kind = %self.kind, error = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, kind = %self.kind, error = %self.message, "request refused");
        }
        self.body()
    }
}

/// A JSON request body. Unlike `axum::Json` it does not insist on a content type, and a body
/// that does not parse is a 400 with serde's message in the API's error shape.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = bytes::Bytes::from_request(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::invalid(format!("request body is not valid json: {e}")))
    }
}

/// Query parameters; a query that does not parse is a 400 in the API's error shape.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Path parameters; a path that does not parse is a 400 in the API's error shape.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);
