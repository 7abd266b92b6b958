//! The requests of the store: rust-s3 builds and signs each one (URL, headers, body), and the
//! store sends it with its own reqwest client.
//!
//! Why not rust-s3's client: rust-s3 0.38 builds it itself, in `request::tokio_backend::client`,
//! from a crate-private `ClientOptions` that holds a proxy and the `danger_accept_invalid_*`
//! switches and nothing else; `Bucket` keeps it in a private field, and no API takes a client
//! or a root certificate. A server signed by a private CA (`ca_file`) is only reachable through
//! a client of ours, and one client for every request keeps a single path.

use std::borrow::Cow;

use bytes::Bytes;
use reqwest::header::{HeaderMap, CONTENT_LENGTH, ETAG};
use s3::command::{Command, HttpMethod, Multipart};
use s3::error::S3Error;
use s3::request::tokio_backend::ReqwestRequest;
use s3::request::Request as _;
use s3::serde_types::{CompleteMultipartUploadData, Part};

use super::{xml_element, S3PackageStore, S3Settings, STREAMING_THRESHOLD};
use crate::error::{Error, Result};

/// The content type of every archive.
const ARCHIVE_TYPE: &str = "application/octet-stream";

/// The HTTP client of a store: reqwest's defaults, as rust-s3's own client has them, and the CA
/// of `ca_file` added to the web PKI roots.
pub(super) fn client(settings: &S3Settings) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = &settings.ca_file {
        for der in crate::tls::ca_certificates("s3 ca_file", path)? {
            let certificate = reqwest::Certificate::from_der(&der).map_err(|e| {
                Error::invalid(format!(
                    "s3 ca_file {}: not a usable CA certificate",
                    path.display()
                ))
                .with_source(e)
            })?;
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| Error::internal("building the s3 http client").with_source(e))
}

/// An answer of the server, whatever its status.
pub(super) struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The response headers (`ETag`, `Content-Length`).
    pub headers: HeaderMap,
    /// The body: an object, an XML document, or nothing.
    pub body: Bytes,
}

impl Answer {
    /// Whether the status is a success (2xx).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (an S3 error document, say).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The `Content-Length` header, as a HEAD request reads an object's size.
    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
    }
}

impl S3PackageStore {
    /// Sends `command` on `path` (an object key, or the bucket with `""` or `"/"`), signed by
    /// rust-s3, and returns the answer; `what` names the operation in errors.
    pub(super) async fn send(
        &self,
        path: &str,
        command: Command<'_>,
        what: &str,
    ) -> Result<Answer> {
        let unsigned = |e: S3Error| {
            Error::internal(format!(
                "s3 request to {} could not be signed while {what}",
                self.endpoint
            ))
            .with_source(e)
        };
        let request = ReqwestRequest::new(&self.bucket, path, command)
            .await
            .map_err(unsigned)?;
        let method = match request.command.http_verb() {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Head => reqwest::Method::HEAD,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Delete => reqwest::Method::DELETE,
        };
        let url = request.url().map_err(unsigned)?;
        let headers = request.headers().await.map_err(unsigned)?;
        let body = request.request_body().map_err(unsigned)?;
        let mut builder = self
            .client
            .request(method, url.as_str())
            .headers(headers)
            .body(body);
        if let Some(timeout) = self.bucket.request_timeout {
            builder = builder.timeout(timeout);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| self.request_error(what, e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.request_error(what, e))?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Uploads `bytes` to `key`: one PUT, or a multipart upload of `STREAMING_THRESHOLD` parts
    /// for larger archives.
    pub(super) async fn upload(&self, key: &str, bytes: &[u8], what: &str) -> Result<()> {
        if bytes.len() > STREAMING_THRESHOLD {
            return self.upload_in_parts(key, bytes, what).await;
        }
        let command = Command::PutObject {
            content: bytes,
            content_type: ARCHIVE_TYPE,
            custom_headers: None,
            multipart: None,
        };
        let answer = self.send(key, command, what).await?;
        if !answer.is_success() {
            return Err(self.status_error(what, answer.status, &answer.text()));
        }
        Ok(())
    }

    /// A multipart upload; aborted (best effort) when a step fails, so no parts are left
    /// behind.
    async fn upload_in_parts(&self, key: &str, bytes: &[u8], what: &str) -> Result<()> {
        let command = Command::InitiateMultipartUpload {
            content_type: ARCHIVE_TYPE,
        };
        let answer = self.send(key, command, what).await?;
        let text = answer.text();
        if !answer.is_success() {
            return Err(self.status_error(what, answer.status, &text));
        }
        let Some(upload_id) = xml_element(&text, "UploadId") else {
            return Err(Error::internal(format!(
                "s3 endpoint {} started a multipart upload without an UploadId while {what}",
                self.endpoint
            )));
        };
        let uploaded = self.upload_parts(key, upload_id, bytes, what).await;
        if uploaded.is_err() {
            let abort = Command::AbortMultipartUpload { upload_id };
            if let Err(e) = self.send(key, abort, what).await {
                tracing::warn!(key = %key, error = %e.chain(), "could not abort a failed s3 multipart upload");
            }
        }
        uploaded
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        bytes: &[u8],
        what: &str,
    ) -> Result<()> {
        let mut parts = Vec::new();
        for (part_number, chunk) in (1..).zip(bytes.chunks(STREAMING_THRESHOLD)) {
            let command = Command::PutObject {
                content: chunk,
                content_type: ARCHIVE_TYPE,
                custom_headers: None,
                multipart: Some(Multipart::new(part_number, upload_id)),
            };
            let answer = self.send(key, command, what).await?;
            if !answer.is_success() {
                return Err(self.status_error(what, answer.status, &answer.text()));
            }
            let Some(etag) = answer.headers.get(ETAG).and_then(|v| v.to_str().ok()) else {
                return Err(Error::internal(format!(
                    "s3 endpoint {} stored part {part_number} without an ETag while {what}",
                    self.endpoint
                )));
            };
            parts.push(Part {
                part_number,
                etag: etag.to_string(),
            });
        }
        let command = Command::CompleteMultipartUpload {
            upload_id,
            data: CompleteMultipartUploadData { parts },
        };
        let answer = self.send(key, command, what).await?;
        let text = answer.text();
        if !answer.is_success() {
            return Err(self.status_error(what, answer.status, &text));
        }
        // S3 may answer 200, then an error document once it has started to assemble the parts.
        if let Some(code) = xml_element(&text, "Code") {
            return Err(Error::unavailable(format!(
                "s3 endpoint {} failed to assemble the parts of {key} while {what} ({code})",
                self.endpoint
            )));
        }
        Ok(())
    }

    /// A request that got no HTTP answer.
    fn request_error(&self, what: &str, e: reqwest::Error) -> Error {
        let endpoint = &self.endpoint;
        if let Some(why) = crate::tls::refused_certificate(&e, self.ca_file.as_deref(), "endpoint")
        {
            return Error::unavailable(format!(
                "s3 endpoint {endpoint} failed while {what}: {why}"
            ))
            .with_source(e);
        }
        if e.is_timeout() {
            Error::unavailable(format!("s3 endpoint {endpoint} timed out while {what}"))
                .with_source(e)
        } else if e.is_connect() {
            Error::unavailable(format!(
                "s3 endpoint {endpoint} is unreachable while {what}"
            ))
            .with_source(e)
        } else {
            Error::unavailable(format!("s3 request to {endpoint} failed while {what}"))
                .with_source(e)
        }
    }
}
