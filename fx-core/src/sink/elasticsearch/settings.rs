//! Settings of the Elasticsearch sink (`[backends.sink] kind = "elasticsearch"`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Settings of the Elasticsearch sink. Credentials are optional (a cluster without security);
/// give either `username` and `password`, or `api_key`. Secrets are redacted in `Debug` and
/// never logged.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchSettings {
    /// Base URL of the cluster, e.g. `http://elasticsearch:9200` (`http` or `https`; TLS with
    /// rustls and the platform's web PKI roots, and `ca_file`). Credentials do not go in the
    /// URL.
    pub url: String,
    /// A PEM file of the CA that signed the server's certificate, for an `https://` URL signed
    /// by a private CA; the platform's web PKI roots are trusted too (the CA is added to them,
    /// not put in their place). Read at start: a file that cannot be read or holds no
    /// certificate stops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// User for HTTP basic authentication (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Password of `username`. A secret.
    #[serde(default)]
    #[schemars(extend("writeOnly" = true))]
    pub password: Option<String>,
    /// An API key, base64-encoded `id:api_key` as Elasticsearch returns it in `encoded`. A
    /// secret.
    #[serde(default)]
    #[schemars(extend("writeOnly" = true))]
    pub api_key: Option<String>,
    /// Prefix of every index and template name: indices are `<prefix>-logs-YYYY.MM.DD`,
    /// `<prefix>-metrics-…`, `<prefix>-executions-…`, `<prefix>-audit-…`,
    /// `<prefix>-workflow-runs-…` and `<prefix>-workflow-steps-…`. Lowercase letters, digits,
    /// `-`, `_`.
    #[serde(default = "default_index_prefix")]
    pub index_prefix: String,
    /// A bulk request carries at most this many documents.
    #[serde(default = "default_batch_max_docs")]
    pub batch_max_docs: usize,
    /// A bulk request carries at most this many bytes of NDJSON (a larger single document
    /// goes alone).
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// A document waits at most this long in the buffer before a bulk request is sent, even
    /// when the batch is not full.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Documents held in memory while Elasticsearch is slow or down; beyond it the oldest are
    /// dropped and counted (`dropped_total`, and a warning in the log).
    #[serde(default = "default_buffer_max_docs")]
    pub buffer_max_docs: usize,
    /// Bytes of documents held in memory while Elasticsearch is slow or down (default 64
    /// MiB); beyond it the oldest are dropped and counted, as beyond `buffer_max_docs`.
    #[serde(default = "default_buffer_max_bytes")]
    pub buffer_max_bytes: usize,
    /// Timeout of one request (bulk, search, template), in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// First wait before a failed bulk request is retried, in milliseconds; it doubles on
    /// each failure up to `retry_max_backoff_ms`.
    #[serde(default = "default_retry_initial_backoff_ms")]
    pub retry_initial_backoff_ms: u64,
    /// Longest wait between retries, in milliseconds.
    #[serde(default = "default_retry_max_backoff_ms")]
    pub retry_max_backoff_ms: u64,
    /// Bulk requests return once their documents are searchable (`refresh=wait_for`), so a
    /// document is always either buffered, in flight or searchable, and `execution_logs`
    /// never misses a line. `false` sends without waiting (more throughput, but a line can
    /// be invisible for up to the index refresh interval, 1 s by default).
    #[serde(default = "default_wait_for_refresh")]
    pub wait_for_refresh: bool,
}

fn default_index_prefix() -> String {
    "fx".into()
}
fn default_batch_max_docs() -> usize {
    1_000
}
fn default_batch_max_bytes() -> usize {
    5 * 1024 * 1024
}
fn default_flush_interval_ms() -> u64 {
    1_000
}
fn default_buffer_max_docs() -> usize {
    100_000
}
fn default_buffer_max_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_retry_initial_backoff_ms() -> u64 {
    200
}
fn default_retry_max_backoff_ms() -> u64 {
    30_000
}
fn default_wait_for_refresh() -> bool {
    true
}

impl ElasticsearchSettings {
    /// Settings for the cluster at `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        ElasticsearchSettings {
            url: url.into(),
            ca_file: None,
            username: None,
            password: None,
            api_key: None,
            index_prefix: default_index_prefix(),
            batch_max_docs: default_batch_max_docs(),
            batch_max_bytes: default_batch_max_bytes(),
            flush_interval_ms: default_flush_interval_ms(),
            buffer_max_docs: default_buffer_max_docs(),
            buffer_max_bytes: default_buffer_max_bytes(),
            request_timeout_ms: default_request_timeout_ms(),
            retry_initial_backoff_ms: default_retry_initial_backoff_ms(),
            retry_max_backoff_ms: default_retry_max_backoff_ms(),
            wait_for_refresh: default_wait_for_refresh(),
        }
    }

    /// Checks the settings without contacting the cluster.
    pub fn validate(&self) -> Result<url::Url> {
        let url = url::Url::parse(&self.url).map_err(|e| {
            Error::invalid(format!("elasticsearch url {:?} is not a url", self.url)).with_source(e)
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::invalid(format!(
                "elasticsearch url {:?} is not an http or https url",
                self.url
            )));
        }
        if self.ca_file.is_some() && url.scheme() != "https" {
            return Err(Error::invalid(format!(
                "elasticsearch ca_file is set but url {:?} is not https: the CA checks the certificate of an https:// server",
                self.url
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid(
                "elasticsearch url must not carry credentials: use username and password, or api_key",
            ));
        }
        match (&self.username, &self.password, &self.api_key) {
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(Error::invalid(
                    "elasticsearch username and password must be given together",
                ))
            }
            (Some(_), Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "elasticsearch takes either username and password or api_key, not both",
                ))
            }
            _ => {}
        }
        let prefix = &self.index_prefix;
        let valid_prefix = !prefix.is_empty()
            && prefix.len() <= 200
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            && !prefix.starts_with(['-', '_']);
        if !valid_prefix {
            return Err(Error::invalid(format!(
                "elasticsearch index_prefix {prefix:?} is invalid: lowercase letters, digits, '-' and '_', not starting with '-' or '_'"
            )));
        }
        for (name, value) in [
            ("batch_max_docs", self.batch_max_docs),
            ("batch_max_bytes", self.batch_max_bytes),
            ("buffer_max_docs", self.buffer_max_docs),
            ("buffer_max_bytes", self.buffer_max_bytes),
        ] {
            if value == 0 {
                return Err(Error::invalid(format!(
                    "elasticsearch {name} must be at least 1"
                )));
            }
        }
        for (name, value) in [
            ("flush_interval_ms", self.flush_interval_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("retry_initial_backoff_ms", self.retry_initial_backoff_ms),
            ("retry_max_backoff_ms", self.retry_max_backoff_ms),
        ] {
            if value == 0 {
                return Err(Error::invalid(format!(
                    "elasticsearch {name} must be at least 1"
                )));
            }
        }
        Ok(url)
    }

    /// `flush_interval_ms` as a duration.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }

    /// `request_timeout_ms` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

impl fmt::Debug for ElasticsearchSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("ElasticsearchSettings")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("api_key", &redacted(&self.api_key))
            .field("index_prefix", &self.index_prefix)
            .field("batch_max_docs", &self.batch_max_docs)
            .field("batch_max_bytes", &self.batch_max_bytes)
            .field("flush_interval_ms", &self.flush_interval_ms)
            .field("buffer_max_docs", &self.buffer_max_docs)
            .field("buffer_max_bytes", &self.buffer_max_bytes)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("retry_initial_backoff_ms", &self.retry_initial_backoff_ms)
            .field("retry_max_backoff_ms", &self.retry_max_backoff_ms)
            .field("wait_for_refresh", &self.wait_for_refresh)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_take_defaults_refuse_unknown_fields_and_redact_secrets() {
        let settings: ElasticsearchSettings = toml::from_str(
            r#"url = "http://es:9200"
               username = "fx"
               password = "hunter2""#,
        )
        .unwrap();
        settings.validate().unwrap();
        assert_eq!(settings.index_prefix, "fx");
        assert_eq!(settings.batch_max_docs, 1_000);
        let debug = format!("{settings:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");

        assert!(toml::from_str::<ElasticsearchSettings>(
            r#"url = "http://es:9200"
               batch_size = 3"#
        )
        .is_err());
    }

    #[test]
    fn the_sink_and_its_routing_are_chosen_in_backend_settings() {
        use crate::backends::{BackendSettings, SinkSettings};
        let settings: BackendSettings = toml::from_str(
            r#"[sink]
               kind = "elasticsearch"
               url = "https://es.internal:9200"
               api_key = "aWQ6a2V5"
               index_prefix = "prod"

               [routing]
               succeeded = ["state_store", "sink"]
               failed = ["state_store", "sink"]"#,
        )
        .unwrap();
        let SinkSettings::Elasticsearch(es) = &settings.sink else {
            panic!("not the elasticsearch sink: {:?}", settings.sink);
        };
        assert_eq!(es.index_prefix, "prod");
        es.validate().unwrap();
        settings.routing.validate().unwrap();
        assert!(!format!("{settings:?}").contains("aWQ6a2V5"));
    }

    #[test]
    fn invalid_settings_say_what_to_fix() {
        let check = |edit: fn(&mut ElasticsearchSettings), expected: &str| {
            let mut settings = ElasticsearchSettings::new("http://es:9200");
            edit(&mut settings);
            let err = settings.validate().unwrap_err();
            assert!(err.message().contains(expected), "{}", err.chain());
        };
        check(|s| s.url = "es:9200".into(), "not an http or https url");
        check(
            |s| s.url = "http://u:p@es:9200".into(),
            "must not carry credentials",
        );
        check(|s| s.username = Some("u".into()), "given together");
        check(|s| s.index_prefix = "FX".into(), "index_prefix");
        check(|s| s.buffer_max_docs = 0, "buffer_max_docs");
        check(|s| s.flush_interval_ms = 0, "flush_interval_ms");
        check(|s| s.ca_file = Some("/ca.pem".into()), "not https");
    }
}
