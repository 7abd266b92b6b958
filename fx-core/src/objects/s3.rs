//! The S3 package store (MinIO, AWS S3 or any S3-compatible server), through `rust-s3`:
//! archives as objects `<prefix><first 2 hex digits>/<digest>.fxpkg` in one bucket, addressed
//! path-style at a custom endpoint.
//!
//! Like the local store, `put` verifies the bytes against the digest before anything is sent
//! and is a no-op when the object is already there; `get` verifies what it downloads, so a
//! corrupt object is never handed out. Archives over 8 MiB go up as a multipart upload.
//!
//! rust-s3 signs the requests; the store sends them with its own HTTP client (`requests`),
//! which trusts the CA of `ca_file` on top of the web PKI roots (`tls`).
//!
//! Errors: an endpoint that refuses connections or times out is `Unavailable`, naming the
//! endpoint; a missing object is `NotFound`; credentials the server refuses (HTTP 403, e.g. a
//! signature mismatch) are `Unavailable` too, with a message saying so: the request itself is
//! fine, the store is unusable until an operator fixes its settings, so callers retry later
//! and the API answers 503 rather than blaming the user's package. A server certificate the
//! client refuses is `Unavailable` as well, the message saying whether `ca_file` is the fix.

use std::fmt;
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use s3::bucket::CHUNK_SIZE;
use s3::command::Command;
use s3::creds::Credentials;
use s3::{Bucket, BucketConfiguration, Region};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PackageStore;
use crate::error::{Error, Result};
use crate::package::PackageDigest;

mod requests;

/// Archives larger than this go up as a multipart upload (`rust-s3`'s part size, 8 MiB).
const STREAMING_THRESHOLD: usize = CHUNK_SIZE;

/// Settings of the S3 package store.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Base URL of the S3 API, e.g. `http://minio:9000` (`http` or `https`; TLS with rustls
    /// and the platform's web PKI roots, and `ca_file`); buckets are addressed path-style under
    /// it.
    pub endpoint: String,
    /// A PEM file of the CA that signed the server's certificate, for an `https://` endpoint
    /// signed by a private CA; the platform's web PKI roots are trusted too (the CA is added to
    /// them, not put in their place). Read at start: a file that cannot be read or holds no
    /// certificate stops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Region the requests are signed for; MinIO accepts any, AWS needs the bucket's.
    #[serde(default = "default_region")]
    pub region: String,
    /// Bucket holding the archives.
    pub bucket: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key: never logged, redacted in `Debug`.
    #[schemars(extend("writeOnly" = true))]
    pub secret_key: String,
    /// Prefix of every object key, e.g. `packages/` (may be empty; must not start with `/`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Create the bucket on start when it does not exist.
    #[serde(default = "default_create_bucket")]
    pub create_bucket: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_prefix() -> String {
    "packages/".into()
}
fn default_create_bucket() -> bool {
    true
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("ca_file", &self.ca_file)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("prefix", &self.prefix)
            .field("create_bucket", &self.create_bucket)
            .finish()
    }
}

impl S3Settings {
    /// Checks the settings without contacting the server.
    pub fn validate(&self) -> Result<()> {
        let url = url::Url::parse(&self.endpoint).map_err(|e| {
            Error::invalid(format!("s3 endpoint {:?} is not a url", self.endpoint)).with_source(e)
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::invalid(format!(
                "s3 endpoint {:?} is not an http or https url",
                self.endpoint
            )));
        }
        if self.ca_file.is_some() && url.scheme() != "https" {
            return Err(Error::invalid(format!(
                "s3 ca_file is set but endpoint {:?} is not https: the CA checks the certificate of an https:// server",
                self.endpoint
            )));
        }
        let name = &self.bucket;
        let valid_name = (3..=63).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid_name {
            return Err(Error::invalid(format!(
                "s3 bucket name {name:?} is invalid: 3 to 63 lowercase letters, digits, dots and hyphens"
            )));
        }
        if self.region.is_empty() {
            return Err(Error::invalid("s3 region is empty"));
        }
        if self.access_key.is_empty() || self.secret_key.is_empty() {
            return Err(Error::invalid(
                "s3 access key and secret key must both be set",
            ));
        }
        if self.prefix.starts_with('/') {
            return Err(Error::invalid(format!(
                "s3 key prefix {:?} must not start with '/'",
                self.prefix
            )));
        }
        Ok(())
    }

    /// The endpoint without a trailing slash, as the requests use it.
    fn endpoint(&self) -> &str {
        self.endpoint.trim_end_matches('/')
    }
}

/// Package archives in an S3 bucket.
pub struct S3PackageStore {
    /// The bucket, path-style at the custom endpoint, with the credentials: it signs the
    /// requests.
    bucket: Box<Bucket>,
    /// Sends the requests (trusting `ca_file`).
    client: reqwest::Client,
    /// The endpoint, for messages.
    endpoint: String,
    /// `ca_file`, for messages about the server's certificate.
    ca_file: Option<PathBuf>,
    /// Prefix of every key.
    prefix: String,
}

impl fmt::Debug for S3PackageStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3PackageStore")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket.name())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl S3PackageStore {
    /// Connects to the bucket: checks that the server answers and accepts the credentials, and
    /// creates the bucket when it is missing (with `create_bucket`; `NotFound` otherwise).
    pub async fn open(settings: &S3Settings) -> Result<Self> {
        settings.validate()?;
        let store = S3PackageStore::new(settings)?;
        let (status, body) = store.probe_bucket().await?;
        match status {
            200..=299 => {}
            404 if settings.create_bucket => store.create_bucket(&settings.region).await?,
            404 => {
                return Err(Error::not_found(format!(
                    "s3 bucket {} does not exist at {} and create_bucket is off",
                    settings.bucket, store.endpoint
                )))
            }
            _ => return Err(store.status_error("checking the bucket", status, &body)),
        }
        tracing::info!(
            endpoint = %store.endpoint,
            bucket = %settings.bucket,
            prefix = %store.prefix,
            "s3 package store ready"
        );
        Ok(store)
    }

    /// The client, without contacting the server.
    fn new(settings: &S3Settings) -> Result<Self> {
        let endpoint = settings.endpoint().to_string();
        let region = Region::Custom {
            region: settings.region.clone(),
            endpoint: endpoint.clone(),
        };
        let credentials = Credentials::new(
            Some(&settings.access_key),
            Some(&settings.secret_key),
            None,
            None,
            None,
        )
        .map_err(|e| Error::invalid("configuring s3 credentials").with_source(e))?;
        let bucket = Bucket::new(&settings.bucket, region, credentials)
            .map_err(|e| {
                Error::invalid(format!("configuring s3 bucket {}", settings.bucket)).with_source(e)
            })?
            .with_path_style();
        Ok(S3PackageStore {
            bucket,
            client: requests::client(settings)?,
            endpoint,
            ca_file: settings.ca_file.clone(),
            prefix: settings.prefix.clone(),
        })
    }

    /// The object key of `digest`.
    fn key_of(&self, digest: &PackageDigest) -> String {
        let shard = digest.as_str().get(..2).unwrap_or("00");
        format!("{}{shard}/{digest}.fxpkg", self.prefix)
    }

    /// Lists at most one key of the bucket: the status tells whether the bucket exists and
    /// the credentials are accepted. Returns the status and the body.
    async fn probe_bucket(&self) -> Result<(u16, String)> {
        let command = Command::ListObjectsV2 {
            prefix: self.prefix.clone(),
            delimiter: None,
            continuation_token: None,
            start_after: None,
            max_keys: Some(1),
        };
        let answer = self.send("/", command, "checking the bucket").await?;
        Ok((answer.status, answer.text().into_owned()))
    }

    /// Creates the bucket; one created meanwhile by someone else is fine.
    async fn create_bucket(&self, region: &str) -> Result<()> {
        let mut config = BucketConfiguration::default();
        // us-east-1 takes no location constraint (AWS and moto reject one naming it).
        if region != "us-east-1" {
            config.set_region(self.bucket.region());
        }
        let command = Command::CreateBucket { config };
        let answer = self.send("", command, "creating the bucket").await?;
        let (status, body) = (answer.status, answer.text());
        match status {
            200..=299 => {
                tracing::info!(endpoint = %self.endpoint, bucket = %self.bucket.name(), "s3 bucket created");
                Ok(())
            }
            409 if body.contains("BucketAlreadyOwnedByYou") => Ok(()),
            _ => Err(self.status_error("creating the bucket", status, &body)),
        }
    }

    /// The size of the object at `key`, or `None` if there is none.
    async fn head(&self, key: &str, what: &str) -> Result<Option<u64>> {
        let answer = self.send(key, Command::HeadObject, what).await?;
        match answer.status {
            200..=299 => Ok(Some(answer.content_length().unwrap_or_default())),
            404 => Ok(None),
            status => Err(self.status_error(what, status, "")),
        }
    }

    /// An HTTP answer that is not a success; `body` is the S3 error document, if any.
    fn status_error(&self, what: &str, status: u16, body: &str) -> Error {
        let endpoint = &self.endpoint;
        let bucket = self.bucket.name();
        let code = xml_element(body, "Code")
            .map(|code| format!(", {code}"))
            .unwrap_or_default();
        match status {
            403 => Error::unavailable(format!(
                "s3 endpoint {endpoint} refused the credentials for bucket {bucket} while {what} (http 403{code})"
            )),
            404 => Error::not_found(format!(
                "s3 endpoint {endpoint} found no bucket {bucket} or no such object while {what} (http 404{code})"
            )),
            408 | 429 | 500..=599 => Error::unavailable(format!(
                "s3 endpoint {endpoint} failed while {what} in bucket {bucket} (http {status}{code})"
            )),
            _ => Error::internal(format!(
                "s3 endpoint {endpoint} answered http {status}{code} while {what} in bucket {bucket}"
            )),
        }
    }
}

/// An object of the bucket, as [`S3PackageStore::list_objects`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key without the store's prefix.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Objects other than package archives under the store's prefix (backups, say): named by the
/// caller, stored as they are.
impl S3PackageStore {
    /// The object key of `name`; a name must not climb out of the prefix.
    fn object_key(&self, name: &str) -> Result<String> {
        if name.is_empty() || name.starts_with('/') || name.split('/').any(|s| s == "..") {
            return Err(Error::invalid(format!("{name:?} is not an object name")));
        }
        Ok(format!("{}{name}", self.prefix))
    }

    /// Stores `bytes` as object `name` (in parts when large).
    pub async fn put_object(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let key = self.object_key(name)?;
        self.upload(&key, bytes, &format!("storing {name}")).await
    }

    /// The bytes of object `name`.
    pub async fn get_object(&self, name: &str) -> Result<Bytes> {
        let key = self.object_key(name)?;
        let what = format!("reading {name}");
        let answer = self.send(&key, Command::GetObject, &what).await?;
        if !answer.is_success() {
            let body = answer.text();
            if answer.status == 404 && xml_element(&body, "Code") != Some("NoSuchBucket") {
                return Err(Error::not_found(format!(
                    "no object {key} in bucket {}",
                    self.bucket.name()
                )));
            }
            return Err(self.status_error(&what, answer.status, &body));
        }
        Ok(answer.body)
    }

    /// Deletes object `name` (none there is fine).
    pub async fn delete_object(&self, name: &str) -> Result<()> {
        let key = self.object_key(name)?;
        let what = format!("deleting {name}");
        let answer = self.send(&key, Command::DeleteObject, &what).await?;
        match answer.status {
            200..=299 | 404 => Ok(()),
            status => Err(self.status_error(&what, status, &answer.text())),
        }
    }

    /// The objects whose names start with `name_prefix`, in key order.
    pub async fn list_objects(&self, name_prefix: &str) -> Result<Vec<ObjectInfo>> {
        let prefix = format!("{}{name_prefix}", self.prefix);
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let command = Command::ListObjectsV2 {
                prefix: prefix.clone(),
                delimiter: None,
                continuation_token: token.clone(),
                start_after: None,
                max_keys: Some(1000),
            };
            let what = format!("listing {name_prefix}");
            let answer = self.send("/", command, &what).await?;
            let body = answer.text().into_owned();
            if !answer.is_success() {
                return Err(self.status_error(&what, answer.status, &body));
            }
            for contents in body.split("<Contents>").skip(1) {
                let Some(key) = xml_element(contents, "Key") else {
                    continue;
                };
                let size = xml_element(contents, "Size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                objects.push(ObjectInfo {
                    name: key.strip_prefix(&self.prefix).unwrap_or(key).to_string(),
                    size,
                });
            }
            match xml_element(&body, "NextContinuationToken") {
                Some(next) if xml_element(&body, "IsTruncated") == Some("true") => {
                    token = Some(next.to_string());
                }
                _ => break,
            }
        }
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }
}

/// The text of the first `<name>` element of an S3 XML document (the `Code` of an error,
/// the `UploadId` of a multipart upload).
fn xml_element<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let len = body[start..].find(&format!("</{name}>"))?;
    Some(&body[start..start + len])
}

#[async_trait]
impl PackageStore for S3PackageStore {
    async fn put(&self, digest: &PackageDigest, bytes: Bytes) -> Result<()> {
        let verified = {
            let bytes = bytes.clone();
            let digest = digest.clone();
            tokio::task::spawn_blocking(move || digest.verify(&bytes))
                .await
                .map_err(|e| Error::internal("package digest task failed").with_source(e))?
        };
        verified?;
        let key = self.key_of(digest);
        let what = format!("storing package {digest}");
        // Same digest, same length: the same bytes are there already.
        match self.head(&key, &what).await? {
            Some(len) if len == bytes.len() as u64 => return Ok(()),
            Some(len) => {
                tracing::warn!(digest = %digest, key = %key, stored = len, size = bytes.len(), "stored package has the wrong size, replacing it");
            }
            None => {}
        }
        self.upload(&key, &bytes, &what).await?;
        tracing::debug!(digest = %digest, key = %key, size = bytes.len(), "package stored");
        Ok(())
    }

    async fn get(&self, digest: &PackageDigest) -> Result<Bytes> {
        let key = self.key_of(digest);
        let what = format!("reading package {digest}");
        let answer = self.send(&key, Command::GetObject, &what).await?;
        if !answer.is_success() {
            let body = answer.text();
            if answer.status == 404 && xml_element(&body, "Code") != Some("NoSuchBucket") {
                return Err(Error::not_found(format!("package {digest} not found")));
            }
            return Err(self.status_error(&what, answer.status, &body));
        }
        let bytes = answer.body;
        let checked = {
            let bytes = bytes.clone();
            let digest = digest.clone();
            tokio::task::spawn_blocking(move || digest.verify(&bytes))
                .await
                .map_err(|e| Error::internal("package digest task failed").with_source(e))?
        };
        if let Err(e) = checked {
            tracing::error!(digest = %digest, key = %key, bucket = %self.bucket.name(), "stored package is corrupt");
            return Err(Error::invalid(format!(
                "stored bytes of package {digest} at s3 key {key} in bucket {} do not match the digest",
                self.bucket.name()
            ))
            .with_source(e));
        }
        Ok(bytes)
    }

    async fn exists(&self, digest: &PackageDigest) -> Result<bool> {
        let key = self.key_of(digest);
        let what = format!("checking package {digest}");
        Ok(self.head(&key, &what).await?.is_some())
    }

    async fn delete(&self, digest: &PackageDigest) -> Result<()> {
        let key = self.key_of(digest);
        let what = format!("deleting package {digest}");
        let answer = self.send(&key, Command::DeleteObject, &what).await?;
        match answer.status {
            // S3 answers 204 whether or not the object was there; some servers 404.
            200..=299 | 404 => {
                tracing::debug!(digest = %digest, key = %key, "package deleted");
                Ok(())
            }
            status => Err(self.status_error(&what, status, &answer.text())),
        }
    }
}

#[cfg(test)]
mod tests;
