//! The error a function returns to fail its execution.

use std::fmt;

/// Why a function failed. Its message becomes the execution's failure reason.
///
/// Write messages in lowercase, without a final period, naming what failed and on what:
/// `Error::new(format!("order {id} has no items"))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message, by value.
    pub fn into_message(self) -> String {
        self.message
    }

    /// This error with `context` in front: `"<context>: <message>"`.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Error {
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::new(format!("json: {error}"))
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_goes_in_front_of_the_message() {
        let err = Error::new("missing field `items`").context("reading order o-1");
        assert_eq!(err.to_string(), "reading order o-1: missing field `items`");
    }

    #[test]
    fn json_errors_convert() {
        let err: Error = serde_json::from_str::<u32>("x").unwrap_err().into();
        assert!(err.message().starts_with("json: "), "{err}");
    }
}
