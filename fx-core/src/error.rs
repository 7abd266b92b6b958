//! The one error type of the ports: a kind that callers act on, and a message a user can read.

use std::fmt;

/// What went wrong, in the terms a caller acts on: the API maps it to an HTTP status, the
/// gateway and executor to a retry decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The thing asked for does not exist.
    NotFound,
    /// The write conflicts with what is stored (an immutable version, a stale revision).
    Conflict,
    /// The input is malformed or breaks a rule; retrying the same input fails again.
    Invalid,
    /// A backend is down or overloaded; retrying later may succeed.
    Unavailable,
    /// A bug or an unexpected state on our side.
    Internal,
    /// No valid credential was presented (none, unknown, expired or revoked).
    Unauthenticated,
    /// The caller is known but may not do this.
    Forbidden,
}

impl ErrorKind {
    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
        };
        f.write_str(name)
    }
}

/// An error of a port or of the core model: a kind, a lowercase message naming what failed and
/// on what, and optionally the underlying cause.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Result of the core and its ports.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Conflict, message)
    }

    /// Shorthand for [`ErrorKind::Invalid`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Invalid, message)
    }

    /// Shorthand for [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unavailable, message)
    }

    /// Shorthand for [`ErrorKind::Unauthenticated`].
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unauthenticated, message)
    }

    /// Shorthand for [`ErrorKind::Forbidden`].
    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Forbidden, message)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    /// Attaches the underlying cause; its text is appended to the message when displayed in
    /// full with [`Error::chain`].
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The same error with `context` before its message (`context: message`), its kind and
    /// cause kept.
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without its causes.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message followed by every cause, `a: b: c`, for logs and API responses.
    pub fn chain(&self) -> String {
        let mut text = self.message.clone();
        let mut cause: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|e| e as _);
        while let Some(err) = cause {
            text.push_str(": ");
            text.push_str(&err.to_string());
            cause = err.source();
        }
        text
    }
}

/// Adds context to foreign errors, turning them into a core [`Error`] of a given kind.
pub trait ResultExt<T> {
    /// Wraps the error as `kind` with `message` as context.
    fn kind_context(self, kind: ErrorKind, message: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E> ResultExt<T> for std::result::Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn kind_context(self, kind: ErrorKind, message: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::new(kind, message()).with_source(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_lists_every_cause() {
        let io = std::io::Error::other("disk full");
        let err = Error::unavailable("writing package abc").with_source(io);
        assert_eq!(err.chain(), "writing package abc: disk full");
        assert_eq!(err.to_string(), "writing package abc");
        assert!(err.kind().is_retryable());
    }
}
