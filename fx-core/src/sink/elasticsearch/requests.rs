//! The requests the sink makes, through the `elasticsearch` crate: install the index templates,
//! send a bulk batch and read back its per-document outcome, search an execution's or a
//! handler's log lines.
//!
//! Errors: a cluster that cannot be reached, times out, answers 429 or 5xx, or refuses the
//! credentials (401/403: an operator fixes the settings, the sink keeps buffering meanwhile)
//! is `Unavailable`, and so is a TLS certificate the client refuses (the message says whether
//! `ca_file` is the fix); any other refusal is `Invalid`, with the server's reason.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat};

use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::response::Response;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::StatusCode;
use elasticsearch::indices::{IndicesPutIndexTemplateParts, IndicesPutTemplateParts};
use elasticsearch::params::Refresh;
use elasticsearch::{BulkParts, Elasticsearch, SearchParts};
use serde_json::{json, Value};

use super::buffer::Op;
use super::mappings::{self, Family, KeyValueType, LogSource};
use super::settings::ElasticsearchSettings;
use crate::error::{Error, ErrorKind, Result};
use crate::execution::{ExecutionId, LogLine};
use crate::sink::LogQuery;

/// Lines fetched per search page when reading an execution's logs.
const LOG_PAGE: usize = 1_000;

/// The client of one cluster, and how to name it in messages.
#[derive(Clone)]
pub struct Cluster {
    client: Elasticsearch,
    /// The URL, for messages (it never carries credentials).
    url: Arc<str>,
    /// `ca_file`, for messages about the server's certificate.
    ca_file: Option<Arc<Path>>,
    prefix: Arc<str>,
    wait_for_refresh: bool,
}

/// Which kind of index template the cluster accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Templates {
    /// Composable `_index_template` (Elasticsearch 7.8+, OpenSearch).
    Composable,
    /// Legacy `_template`, on a cluster without composable templates.
    Legacy,
    /// None: the cluster refused them (the sink logged why and writes without them).
    Refused,
}

/// What became of a bulk batch.
#[derive(Debug, Default)]
pub struct BulkOutcome {
    /// Documents to send again (the cluster answered 429 or 5xx for them).
    pub retry: Vec<Arc<Op>>,
    /// Documents the cluster refused for good (a mapping conflict, say), with one reason.
    pub rejected: usize,
    /// The first refusal's reason.
    pub first_rejection: Option<String>,
}

impl Cluster {
    /// A client for the cluster of `settings` (validated); sends nothing yet.
    pub fn new(settings: &ElasticsearchSettings) -> Result<Self> {
        let url = settings.validate()?;
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(settings.request_timeout())
            .disable_proxy();
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.auth(Credentials::Basic(user.clone(), password.clone()));
        }
        if let Some(key) = &settings.api_key {
            builder = builder.auth(Credentials::EncodedApiKey(key.clone()));
        }
        if let Some(path) = &settings.ca_file {
            // `Full` adds the CA to the web PKI roots (see `tls`).
            let mut chain: Option<Certificate> = None;
            for der in crate::tls::ca_certificates("elasticsearch ca_file", path)? {
                let certificate = Certificate::from_der(&der).map_err(|e| {
                    Error::invalid(format!(
                        "elasticsearch ca_file {}: not a usable CA certificate",
                        path.display()
                    ))
                    .with_source(e)
                })?;
                match &mut chain {
                    Some(chain) => chain.append(certificate),
                    None => chain = Some(certificate),
                }
            }
            if let Some(chain) = chain {
                builder = builder.cert_validation(CertificateValidation::Full(chain));
            }
        }
        let transport = builder.build().map_err(|e| {
            Error::invalid(format!(
                "building the elasticsearch client for {}",
                settings.url
            ))
            .with_source(e)
        })?;
        Ok(Cluster {
            client: Elasticsearch::new(transport),
            url: settings.url.trim_end_matches('/').into(),
            ca_file: settings.ca_file.as_deref().map(Arc::from),
            prefix: settings.index_prefix.as_str().into(),
            wait_for_refresh: settings.wait_for_refresh,
        })
    }

    /// The cluster's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The index prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Installs (or updates) the index templates, one per [`Family`]; composable ones, or
    /// legacy ones on a cluster without them.
    pub async fn install_templates(&self) -> Result<Templates> {
        let what = || format!("reading the version of elasticsearch at {}", self.url);
        let response = self
            .client
            .info()
            .send()
            .await
            .map_err(|e| self.transport_error(e, what()))?;
        let root = self.ok_json(response, what).await?;
        let key_values = KeyValueType::for_server(&root);
        let mut kind = Templates::Composable;
        for family in Family::ALL {
            let name = family.template_name(&self.prefix);
            let what = || {
                format!(
                    "installing index template {name} on elasticsearch at {}",
                    self.url
                )
            };
            if kind == Templates::Composable {
                let response = self
                    .client
                    .indices()
                    .put_index_template(IndicesPutIndexTemplateParts::Name(&name))
                    .body(mappings::composable_template(
                        family,
                        &self.prefix,
                        key_values,
                    ))
                    .send()
                    .await
                    .map_err(|e| self.transport_error(e, what()))?;
                if !lacks_composable_templates(response.status_code()) {
                    self.ok(response, what).await?;
                    continue;
                }
                tracing::warn!(url = %self.url, "elasticsearch has no composable index templates (_index_template); installing legacy _template ones");
                kind = Templates::Legacy;
            }
            let response = self
                .client
                .indices()
                .put_template(IndicesPutTemplateParts::Name(&name))
                .body(mappings::legacy_template(family, &self.prefix, key_values))
                .send()
                .await
                .map_err(|e| self.transport_error(e, what()))?;
            self.ok(response, what).await?;
        }
        tracing::info!(url = %self.url, prefix = %self.prefix, templates = ?kind, "elasticsearch index templates installed");
        Ok(kind)
    }

    /// Sends `batch` as one bulk request.
    pub async fn bulk(&self, batch: &[Arc<Op>]) -> Result<BulkOutcome> {
        let what = || {
            format!(
                "sending {} documents to elasticsearch at {}",
                batch.len(),
                self.url
            )
        };
        let mut lines: Vec<&str> = Vec::with_capacity(batch.len() * 2);
        for op in batch {
            lines.push(&op.action);
            lines.push(&op.source);
        }
        let refresh = if self.wait_for_refresh {
            Refresh::WaitFor
        } else {
            Refresh::False
        };
        let response = self
            .client
            .bulk(BulkParts::None)
            .refresh(refresh)
            .body(lines)
            .send()
            .await
            .map_err(|e| self.transport_error(e, what()))?;
        let body = self.ok_json(response, what).await?;
        let mut outcome = BulkOutcome::default();
        if body["errors"].as_bool() == Some(false) {
            return Ok(outcome);
        }
        let items = body["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if items.len() != batch.len() {
            return Err(Error::unavailable(format!(
                "{}: the response has {} items",
                what(),
                items.len()
            )));
        }
        for (op, item) in batch.iter().zip(items) {
            // `{"create": {"status": 201, …}}`: one key, the action.
            let result = item
                .as_object()
                .and_then(|o| o.values().next())
                .unwrap_or(&Value::Null);
            let status = result["status"].as_u64().unwrap_or(0);
            match status {
                200..=299 => {}
                // `create` of a document that is there already: written before, done.
                409 => {}
                429 | 500..=599 | 0 => outcome.retry.push(Arc::clone(op)),
                _ => {
                    outcome.rejected += 1;
                    if outcome.first_rejection.is_none() {
                        outcome.first_rejection = Some(format!(
                            "{} {}: {}",
                            result["_index"].as_str().unwrap_or_default(),
                            result["_id"].as_str().unwrap_or_default(),
                            reason(&result["error"])
                        ));
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// One page of a search of the log indices (`body` holds the query, sort and
    /// `search_after`): its hits.
    async fn search_log_page(
        &self,
        pattern: &str,
        body: Value,
        what: impl Fn() -> String + Copy,
    ) -> Result<Vec<Value>> {
        let response = self
            .client
            .search(SearchParts::Index(&[pattern]))
            .ignore_unavailable(true)
            .allow_no_indices(true)
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e, what()))?;
        let mut body = self.ok_json(response, what).await?;
        Ok(match body["hits"]["hits"].take() {
            Value::Array(hits) => hits,
            _ => Vec::new(),
        })
    }

    /// The indexed log lines of `id`, in (attempt, seq) order.
    pub async fn search_logs(&self, id: &ExecutionId) -> Result<Vec<LogLine>> {
        let what = || {
            format!(
                "searching the log lines of execution {id} in elasticsearch at {}",
                self.url
            )
        };
        let pattern = Family::Logs.pattern(&self.prefix);
        let mut lines = Vec::new();
        let mut after: Option<Value> = None;
        loop {
            let mut query = json!({
                "size": LOG_PAGE,
                "query": { "term": { "execution_id": id.as_str() } },
                "sort": [{ "attempt": "asc" }, { "seq": "asc" }],
            });
            if let Some(after) = after.take() {
                query["search_after"] = after;
            }
            let hits = self.search_log_page(&pattern, query, what).await?;
            for hit in &hits {
                lines.push(log_line(hit, what)?);
            }
            match hits.last() {
                Some(last) if hits.len() == LOG_PAGE => after = Some(last["sort"].clone()),
                _ => return Ok(lines),
            }
        }
    }

    /// The indexed log lines `query` asks for, in [`LogCursor`] order, at most its page size.
    ///
    /// `@timestamp` is indexed to the millisecond while lines are ordered to the microsecond:
    /// the search sorts by (millisecond, execution, attempt, seq) from the millisecond of the
    /// query's lower bound and reads on until it holds a page and every line of that page's
    /// last millisecond; those are then filtered and ordered exactly.
    ///
    /// [`LogCursor`]: crate::sink::LogCursor
    pub async fn search_handler_logs(&self, query: &LogQuery) -> Result<Vec<LogLine>> {
        let what = || {
            format!(
                "searching the log lines of handler {} in elasticsearch at {}",
                query.handler, self.url
            )
        };
        let pattern = Family::Logs.pattern(&self.prefix);
        let mut filter = vec![json!({ "term": { "handler": query.handler } })];
        if let Some(from) = query.lower_bound() {
            let from = DateTime::from_timestamp_millis(from.timestamp_millis()).unwrap_or(from);
            filter.push(json!({ "range": { "@timestamp": {
                "gte": from.to_rfc3339_opts(SecondsFormat::Millis, true)
            } } }));
        }
        let page_size = query.page_size();
        let mut admitted = Vec::new();
        // The millisecond of the page's last line, once the page is full.
        let mut last_millisecond: Option<i64> = None;
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({
                "size": LOG_PAGE,
                "query": { "bool": { "filter": filter } },
                "sort": [
                    { "@timestamp": "asc" },
                    { "execution_id": "asc" },
                    { "attempt": "asc" },
                    { "seq": "asc" },
                ],
            });
            if let Some(after) = after.take() {
                body["search_after"] = after;
            }
            let hits = self.search_log_page(&pattern, body, what).await?;
            for hit in &hits {
                let line = log_line(hit, what)?;
                let millisecond = line.at.timestamp_millis();
                if last_millisecond.is_some_and(|last| millisecond > last) {
                    return Ok(query.page_of(admitted));
                }
                if query.admits(&line) {
                    admitted.push(line);
                    if admitted.len() == page_size {
                        last_millisecond = Some(millisecond);
                    }
                }
            }
            match hits.last() {
                Some(last) if hits.len() == LOG_PAGE => after = Some(last["sort"].clone()),
                _ => return Ok(query.page_of(admitted)),
            }
        }
    }

    /// The raw client, for tests that query the indices directly.
    #[cfg(test)]
    pub fn client(&self) -> &Elasticsearch {
        &self.client
    }

    /// The JSON body of `response` when it is a success; otherwise as [`Self::ok`].
    async fn ok_json(&self, response: Response, what: impl Fn() -> String) -> Result<Value> {
        self.ok(response, &what)
            .await?
            .json()
            .await
            .map_err(|e| self.transport_error(e, what()))
    }

    /// `response` when it is a success; otherwise an error of the kind its status calls for,
    /// with the server's reason.
    async fn ok(&self, response: Response, what: impl FnOnce() -> String) -> Result<Response> {
        let status = response.status_code();
        if status.is_success() {
            return Ok(response);
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let reason = reason(&body["error"]);
        let kind = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(Error::unavailable(format!(
                    "{}: elasticsearch refused the credentials ({status}): check username and password or api_key: {reason}",
                    what()
                )))
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => ErrorKind::Unavailable,
            s if s.is_server_error() => ErrorKind::Unavailable,
            _ => ErrorKind::Invalid,
        };
        Err(Error::new(kind, format!("{}: {status}: {reason}", what())))
    }

    fn transport_error(&self, e: elasticsearch::Error, what: String) -> Error {
        match crate::tls::refused_certificate(&e, self.ca_file.as_deref(), "url") {
            Some(why) => Error::unavailable(format!("{what}: {why}")).with_source(e),
            None => Error::unavailable(what).with_source(e),
        }
    }
}

/// The log line a search hit holds.
fn log_line(hit: &Value, what: impl Fn() -> String) -> Result<LogLine> {
    let source: LogSource = serde_json::from_value(hit["_source"].clone()).map_err(|e| {
        Error::internal(format!(
            "{}: document {} is not a log line",
            what(),
            hit["_id"].as_str().unwrap_or_default()
        ))
        .with_source(e)
    })?;
    Ok(LogLine::from(source))
}

/// Whether a `PUT _index_template` answer means the cluster does not know that API.
fn lacks_composable_templates(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    )
}

/// The reason of an Elasticsearch `error` object (or string).
fn reason(error: &Value) -> String {
    match error {
        Value::String(s) => s.clone(),
        Value::Object(_) => {
            let kind = error["type"].as_str().unwrap_or("error");
            let reason = error["reason"].as_str().unwrap_or_default();
            match error["root_cause"][0]["reason"].as_str() {
                Some(root) if root != reason => format!("{kind}: {reason} ({root})"),
                _ => format!("{kind}: {reason}"),
            }
        }
        Value::Null => "no reason given".into(),
        other => other.to_string(),
    }
}
