//! How an executor receives the platform secrets of its pool: from a [`super::Vault`] in the
//! same process (`ferrisfx dev`), or from the management server over HTTP
//! ([`HttpDelivery`]: `GET /api/v1/pools/{pool}/secrets` with the token of a service account
//! granted `secret:deliver` on the pool).

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretValue;
use crate::error::Result;

/// Where an executor's platform secrets come from.
#[async_trait]
pub trait SecretDelivery: Send + Sync + 'static {
    /// The values of the secrets delivered to executors of `pool`.
    async fn deliver(&self, pool: &str) -> Result<BTreeMap<String, SecretValue>>;

    /// Where they come from, for messages.
    fn describe(&self) -> String;
}

/// The environment variable an executor reads its delivery token from by default.
pub const DEFAULT_TOKEN_ENV: &str = "FX_EXECUTOR_TOKEN";

/// Where an executor fetches the platform secrets of its pool: the `[executor.platform_secrets]`
/// table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformSecretsSettings {
    /// The management server's base URL, e.g. `http://ferrisfx-management:8080`. Use
    /// `https://` (with `ca_file` for a private CA) when the network between them is not
    /// trusted: the answer carries secret values.
    #[schemars(with = "String")]
    pub url: url::Url,
    /// A file holding the token of a service account granted `secret:deliver` on this pool.
    /// When unset, the token is read from the variable named by `token_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The environment variable holding the token when `token_file` is unset.
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// A PEM file of the CA that signed the management server's certificate, for `https://`
    /// URLs signed by a private CA (the system's roots are trusted too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

fn default_token_env() -> String {
    DEFAULT_TOKEN_ENV.into()
}

#[cfg(feature = "http")]
pub use http::HttpDelivery;

#[cfg(feature = "http")]
mod http {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::{PlatformSecretsSettings, SecretDelivery};
    use crate::error::{Error, Result};
    use crate::secrets::SecretValue;

    /// Fetches a pool's secrets from the management server.
    pub struct HttpDelivery {
        client: reqwest::Client,
        base: url::Url,
        token: zeroize::Zeroizing<String>,
    }

    impl std::fmt::Debug for HttpDelivery {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("HttpDelivery")
                .field("base", &self.base.as_str())
                .finish_non_exhaustive()
        }
    }

    #[derive(serde::Deserialize)]
    struct Answer {
        secrets: BTreeMap<String, String>,
    }

    impl HttpDelivery {
        /// A client for `settings`: reads the token and the CA file now.
        pub fn new(settings: &PlatformSecretsSettings) -> Result<Self> {
            let token = match &settings.token_file {
                Some(file) => std::fs::read_to_string(file).map_err(|e| {
                    Error::invalid(format!(
                        "cannot read executor.platform_secrets.token_file {}: {e}",
                        file.display()
                    ))
                })?,
                None => std::env::var(&settings.token_env).map_err(|_| {
                    Error::invalid(format!(
                        "executor.platform_secrets is set but has no token: set token_file, or the {} variable, to the token of a service account granted secret:deliver on this pool",
                        settings.token_env
                    ))
                })?,
            };
            let token = zeroize::Zeroizing::new(token.trim().to_string());
            if token.is_empty() {
                return Err(Error::invalid(
                    "executor.platform_secrets: the token is empty",
                ));
            }
            let mut client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(5));
            if let Some(ca) = &settings.ca_file {
                for der in crate::tls::ca_certificates("executor.platform_secrets.ca_file", ca)? {
                    let cert = reqwest::Certificate::from_der(&der).map_err(|e| {
                        Error::invalid(format!(
                            "executor.platform_secrets.ca_file {}: {e}",
                            ca.display()
                        ))
                    })?;
                    client = client.add_root_certificate(cert);
                }
            }
            let client = client.build().map_err(|e| {
                Error::internal("cannot build the secrets delivery client").with_source(e)
            })?;
            Ok(HttpDelivery {
                client,
                base: settings.url.clone(),
                token,
            })
        }
    }

    #[async_trait]
    impl SecretDelivery for HttpDelivery {
        async fn deliver(&self, pool: &str) -> Result<BTreeMap<String, SecretValue>> {
            let url = self
                .base
                .join(&format!("api/v1/pools/{pool}/secrets"))
                .map_err(|e| Error::invalid(format!("executor.platform_secrets.url: {e}")))?;
            let answer = self
                .client
                .get(url.clone())
                .bearer_auth(self.token.as_str())
                .send()
                .await
                .map_err(|e| {
                    Error::unavailable(format!(
                        "cannot fetch the secrets of pool {pool} from {}: {e}",
                        self.base
                    ))
                })?;
            let status = answer.status();
            let body = zeroize::Zeroizing::new(
                answer
                    .bytes()
                    .await
                    .map_err(|e| {
                        Error::unavailable(format!(
                            "reading the secrets of pool {pool} from {}: {e}",
                            self.base
                        ))
                    })?
                    .to_vec(),
            );
            if !status.is_success() {
                // Error answers carry no secret: show what the server said.
                let said = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
                let hint = match status.as_u16() {
                    401 => " (the executor's token is unknown, expired or revoked)",
                    403 => " (grant the executor's service account secret:deliver on this pool)",
                    _ => "",
                };
                let message = format!(
                    "the management server at {} refused the secrets of pool {pool}: {status}{hint}: {said}",
                    self.base
                );
                return Err(if status.is_server_error() {
                    Error::unavailable(message)
                } else {
                    Error::forbidden(message)
                });
            }
            // The error names where the answer went wrong, never what it held (serde's
            // messages quote the input, which may be a value).
            let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
                Error::internal(format!(
                    "the management server at {} answered the secrets of pool {pool} with something else than {{\"secrets\": {{\"name\": \"value\"}}}} ({:?} error at line {}, column {})",
                    self.base,
                    e.classify(),
                    e.line(),
                    e.column()
                ))
            })?;
            answer
                .secrets
                .into_iter()
                .map(|(name, value)| Ok((name, SecretValue::new(value)?)))
                .collect()
        }

        fn describe(&self) -> String {
            format!("the management server at {}", self.base)
        }
    }
}
