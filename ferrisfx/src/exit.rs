//! What the exit status of a `ferrisfx` command says, so that a script can tell "the server is
//! down" from "you may not" from "someone changed it first" without reading the message.
//!
//! | status | meaning |
//! | --- | --- |
//! | 0 | done |
//! | 1 | failed for another reason (a local file, a build, a replay that differs) |
//! | 2 | the command line is wrong (unknown flag, missing argument) |
//! | 3 | the management server could not be reached |
//! | 4 | not signed in, or not allowed (HTTP 401, 403) |
//! | 5 | not found (HTTP 404) |
//! | 6 | conflict: it exists already, or changed since it was read (HTTP 409, 412), or a package version is held with other contents |
//! | 7 | refused as invalid (other HTTP 4xx) |
//! | 8 | the server failed (HTTP 5xx) |
//! | 9 | differences found (`ferrisfx diff --exit-code`) |
//!
//! Errors carry a [`Failure`] somewhere in their chain; [`code`] finds it.

use std::fmt;

/// A failure with a meaning for the exit status.
#[derive(Debug)]
pub enum Failure {
    /// The management server did not answer at all.
    Unreachable {
        /// Its address.
        server: String,
    },
    /// The server answered with an error status.
    Api {
        /// The status.
        status: reqwest::StatusCode,
        /// The server's message.
        message: String,
    },
    /// The client found a conflict itself (a package version held with other contents).
    Conflict(String),
    /// A comparison found differences (`diff --exit-code`).
    Differences,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable { server } => write!(
                f,
                "cannot reach the management server at {server}: is `ferrisfx dev` running? (or pass --server / set FX_SERVER)"
            ),
            Failure::Api { status, message } => write!(f, "server answered {status}: {message}"),
            Failure::Conflict(message) => f.write_str(message),
            Failure::Differences => write!(f, "differences found"),
        }
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// The exit status of this failure.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Unreachable { .. } => 3,
            Failure::Api { status, .. } => match status.as_u16() {
                401 | 403 => 4,
                404 => 5,
                409 | 412 => 6,
                400..=499 => 7,
                _ => 8,
            },
            Failure::Conflict(_) => 6,
            Failure::Differences => 9,
        }
    }

    /// The HTTP status, for an API failure.
    pub fn status(&self) -> Option<reqwest::StatusCode> {
        match self {
            Failure::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The exit status for `error`: that of the first [`Failure`] in its chain, else 1.
pub fn code(error: &anyhow::Error) -> u8 {
    error.downcast_ref::<Failure>().map_or(1, Failure::code)
}

/// The HTTP status of the API failure in `error`'s chain, if any.
pub fn status(error: &anyhow::Error) -> Option<reqwest::StatusCode> {
    error.downcast_ref::<Failure>().and_then(Failure::status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn api(status: u16) -> anyhow::Error {
        anyhow::Error::new(Failure::Api {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            message: "m".into(),
        })
    }

    #[test]
    fn each_kind_of_failure_has_its_status_even_under_context() {
        let cases = [
            (401, 4),
            (403, 4),
            (404, 5),
            (409, 6),
            (412, 6),
            (400, 7),
            (413, 7),
            (500, 8),
            (503, 8),
        ];
        for (status, want) in cases {
            let e = api(status).context("applying ferrisfx.yaml");
            assert_eq!(code(&e), want, "HTTP {status}");
        }
        let down = anyhow::Error::new(Failure::Unreachable {
            server: "http://x".into(),
        })
        .context("listing handlers");
        assert_eq!(code(&down), 3);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let as_context = anyhow::Error::new(io)
            .context(Failure::Unreachable {
                server: "http://x".into(),
            })
            .context("listing handlers");
        assert_eq!(code(&as_context), 3);
        assert_eq!(code(&anyhow::Error::new(Failure::Differences)), 9);
        assert_eq!(code(&anyhow::Error::new(Failure::Conflict("x".into()))), 6);
        assert_eq!(code(&anyhow::anyhow!("reading fx.toml")), 1);
        let plain: anyhow::Result<()> = Err(std::io::Error::other("disk")).context("writing");
        assert_eq!(code(&plain.unwrap_err()), 1);
    }
}
