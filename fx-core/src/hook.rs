//! Webhooks: `POST /hooks/<name>` endpoints that turn a vendor's delivery into a CloudEvent on
//! `fx.events`.
//!
//! A [`Hook`] names how a delivery is checked ([`Verify`]: GitHub, Stripe, Slack, GitLab, a
//! generic HMAC, or nothing) and how it becomes an event ([`Transform`]). The signing secret is
//! a platform secret, named by the hook and read by the management server only; every
//! comparison with it is constant-time. The event carries the delivery's body as its `data`
//! with the request's content type (published byte for byte; the bus decodes JSON data, so a
//! function sees a JSON body as the same value re-encoded, other bodies byte for byte), the
//! chosen headers in the `webhookheaders` extension (a JSON object), and the vendor's
//! delivery id as its `id`, from source `/hooks/<name>`: a redelivery is the same event and
//! runs nothing new.
//!
//! This module is pure: the server reads the body, finds the secret and publishes
//! ([`Hook::verify`], [`Hook::transform`]).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use cloudevents::{EventBuilder, EventBuilderV10};
use ring::hmac;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::validate::validate_name;

/// The type of a delivery a hook passes on untransformed ([`Transform::Raw`]).
pub const RECEIVED_TYPE: &str = "com.ferrisfx.webhook.received";

/// The extension attribute naming the hook an event came through.
pub const HOOK_EXTENSION: &str = "webhook";

/// The extension attribute holding the kept headers, as a JSON object.
pub const HEADERS_EXTENSION: &str = "webhookheaders";

/// The largest body a hook accepts when it names no limit.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

/// The largest `max_body_bytes` a hook may set (the event bus bounds it further).
pub const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// The most headers a hook keeps besides its vendor's.
const MAX_KEPT_HEADERS: usize = 16;

/// The most bytes of the kept headers' JSON (an attribute's limit).
const MAX_HEADERS_JSON: usize = crate::event::MAX_ATTRIBUTE_BYTES;

/// The default tolerance of a signed timestamp (Stripe's and Slack's own default).
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;

/// The longest event type segment taken from a delivery.
const MAX_TYPE_SEGMENT: usize = 64;

/// A webhook as stored in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// Unique name; the endpoint is `POST /hooks/<name>` and the events' source
    /// `/hooks/<name>`.
    pub name: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// How a delivery proves it comes from the sender.
    pub verify: Verify,
    /// How a delivery becomes a CloudEvent.
    pub transform: Transform,
    /// Request headers kept with the event (in the `webhookheaders` extension) besides the
    /// vendor's own (`x-github-event`, `stripe-signature`…); names, any case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_headers: Vec<String>,
    /// How many deliveries a second the hook takes, and how many at once.
    #[serde(default)]
    pub rate: RateLimit,
    /// The largest body accepted; larger ones get `413`.
    #[serde(
        default = "default_max_body",
        skip_serializing_if = "is_default_max_body"
    )]
    pub max_body_bytes: u64,
    /// A disabled hook answers `404` as if it did not exist.
    #[serde(default = "enabled", skip_serializing_if = "Clone::clone")]
    pub enabled: bool,
}

fn default_max_body() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}
fn is_default_max_body(bytes: &u64) -> bool {
    *bytes == DEFAULT_MAX_BODY_BYTES
}
fn enabled() -> bool {
    true
}

/// A token bucket: `per_second` tokens are added each second up to `burst`; a delivery takes
/// one, and none left means `429` with `Retry-After`. Each server process keeps its own
/// bucket, so `n` replicas take up to `n` times the rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// The bucket's size: the most deliveries taken at once.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 10.0,
            burst: 20,
        }
    }
}

/// How a delivery is checked. `secret` names a platform secret (`ferrisfx secret set`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Verify {
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    Github {
        /// The platform secret holding the webhook's secret.
        secret: String,
    },
    /// Stripe: `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`; the
    /// timestamp must be within `tolerance_seconds` of now.
    Stripe {
        /// The platform secret holding the endpoint's signing secret (`whsec_…`).
        secret: String,
        /// How far the signed timestamp may be from now.
        #[serde(default = "default_tolerance")]
        tolerance_seconds: u64,
    },
    /// Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:ts:body">` with
    /// `X-Slack-Request-Timestamp: ts` within `tolerance_seconds` of now.
    Slack {
        /// The platform secret holding the app's signing secret.
        secret: String,
        /// How far the signed timestamp may be from now.
        #[serde(default = "default_tolerance")]
        tolerance_seconds: u64,
    },
    /// GitLab: `X-Gitlab-Token` equals the secret.
    Gitlab {
        /// The platform secret holding the webhook's token.
        secret: String,
    },
    /// Any sender that signs the body with an HMAC: the header `header` holds `prefix`
    /// followed by the MAC in `encoding`.
    Hmac {
        /// The platform secret holding the key.
        secret: String,
        /// The header carrying the signature.
        header: String,
        /// The hash function.
        #[serde(default)]
        algorithm: HmacAlgorithm,
        /// How the MAC is written.
        #[serde(default)]
        encoding: MacEncoding,
        /// Text before the MAC in the header (`sha256=`), if any.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        prefix: String,
    },
    /// No check: anyone who can reach the endpoint can post events through it. Only behind
    /// a network boundary that does the checking.
    None,
}

fn default_tolerance() -> u64 {
    DEFAULT_TOLERANCE_SECONDS
}

/// The hash function of a generic HMAC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    /// HMAC-SHA1 (legacy senders only).
    Sha1,
    /// HMAC-SHA256.
    #[default]
    Sha256,
    /// HMAC-SHA384.
    Sha384,
    /// HMAC-SHA512.
    Sha512,
}

/// How a MAC is written in a header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MacEncoding {
    /// Lowercase or uppercase hexadecimal.
    #[default]
    Hex,
    /// Standard base64, with padding.
    Base64,
}

/// How a delivery becomes a CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Transform {
    /// GitHub: type `com.github.<X-GitHub-Event>[.<action>]`, id `X-GitHub-Delivery`, subject
    /// the repository's full name.
    Github,
    /// Stripe: type `com.stripe.<type>`, id the event's `id`, time its `created`, subject the
    /// object's id.
    Stripe,
    /// GitLab: type `com.gitlab.<object_kind>[.<object_attributes.action>]`, id
    /// `Idempotency-Key` (the same on retries) or `X-Gitlab-Event-UUID`, subject the
    /// project's path.
    Gitlab,
    /// Any JSON body: the type fixed or read at a JSON pointer, the id read at a pointer or
    /// from a header.
    Json {
        /// The type, when not read from the body.
        #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
        ty: Option<String>,
        /// A JSON pointer (`/event/type`) to the type; `type_prefix` is put before it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        type_pointer: Option<String>,
        /// Text before the type read at `type_pointer` (`com.example.`).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        type_prefix: String,
        /// A JSON pointer to the delivery's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id_pointer: Option<String>,
        /// A header holding the delivery's id (when there is no `id_pointer`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id_header: Option<String>,
        /// A JSON pointer to the subject.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject_pointer: Option<String>,
    },
    /// The delivery as it came, type [`RECEIVED_TYPE`]: a custom transformer is a handler on
    /// this type and the hook's source whose function returns the events it makes.
    Raw {
        /// A header holding the delivery's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id_header: Option<String>,
    },
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The signature is missing, malformed, stale or wrong: `401`.
    Signature(String),
    /// The body or headers do not make an event: `400`.
    Malformed(String),
}

impl Refusal {
    /// The reason, for the sender.
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Signature(r) | Refusal::Malformed(r) => r,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// One delivery as received: headers (names lowercase) and the body.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    /// Request headers, names in lowercase; a repeated header appears once per value.
    pub headers: &'a [(String, String)],
    /// The body as received.
    pub body: &'a [u8],
    /// When it arrived.
    pub received: DateTime<Utc>,
}

impl Delivery<'_> {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A digest of the body: the id of a delivery that carries none, so that the same body
    /// posted again is the same event.
    fn body_digest(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(self.body)))
    }
}

impl Hook {
    /// Checks every rule a stored hook must satisfy; the message names the offending field.
    pub fn validate(&self) -> Result<()> {
        validate_name("hook name", &self.name)?;
        if let Some(secret) = self.verify.secret() {
            crate::secrets::validate_secret_name(secret)
                .map_err(|e| Error::invalid(format!("verify.secret: {}", e.message())))?;
        }
        match &self.verify {
            Verify::Stripe {
                tolerance_seconds, ..
            }
            | Verify::Slack {
                tolerance_seconds, ..
            } if *tolerance_seconds == 0 || *tolerance_seconds > 24 * 3600 => {
                return Err(Error::invalid(format!(
                    "verify.tolerance_seconds must be 1 to 86400, got {tolerance_seconds}"
                )));
            }
            Verify::Hmac { header, .. } => validate_header_name("verify.header", header)?,
            _ => {}
        }
        match &self.transform {
            Transform::Json {
                ty,
                type_pointer,
                type_prefix,
                id_pointer,
                id_header,
                subject_pointer,
            } => {
                match (ty, type_pointer) {
                    (Some(_), Some(_)) => {
                        return Err(Error::invalid(
                            "transform: give type or type_pointer, not both",
                        ))
                    }
                    (None, None) => {
                        return Err(Error::invalid(
                            "transform: a json transform needs type or type_pointer",
                        ))
                    }
                    _ => {}
                }
                if let Some(ty) = ty {
                    validate_type("transform.type", ty)?;
                }
                if !type_prefix.is_empty() {
                    validate_type("transform.type_prefix", type_prefix.trim_end_matches('.'))?;
                }
                for (field, pointer) in [
                    ("transform.type_pointer", type_pointer),
                    ("transform.id_pointer", id_pointer),
                    ("transform.subject_pointer", subject_pointer),
                ] {
                    if let Some(p) = pointer {
                        if !(p.is_empty() || p.starts_with('/')) {
                            return Err(Error::invalid(format!(
                                "{field} {p:?} is not a JSON pointer: it starts with '/' (\"/event/id\")"
                            )));
                        }
                    }
                }
                if let Some(h) = id_header {
                    validate_header_name("transform.id_header", h)?;
                }
            }
            Transform::Raw { id_header: Some(h) } => {
                validate_header_name("transform.id_header", h)?
            }
            _ => {}
        }
        if self.keep_headers.len() > MAX_KEPT_HEADERS {
            return Err(Error::invalid(format!(
                "keep_headers names {} headers; at most {MAX_KEPT_HEADERS}",
                self.keep_headers.len()
            )));
        }
        for h in &self.keep_headers {
            validate_header_name("keep_headers", h)?;
        }
        if !(self.rate.per_second.is_finite()
            && self.rate.per_second > 0.0
            && self.rate.per_second <= 100_000.0)
        {
            return Err(Error::invalid(format!(
                "rate.per_second must be above 0 and at most 100000, got {}",
                self.rate.per_second
            )));
        }
        if self.rate.burst == 0 || self.rate.burst > 100_000 {
            return Err(Error::invalid(format!(
                "rate.burst must be 1 to 100000, got {}",
                self.rate.burst
            )));
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > MAX_BODY_BYTES {
            return Err(Error::invalid(format!(
                "max_body_bytes must be 1 to {MAX_BODY_BYTES}, got {}",
                self.max_body_bytes
            )));
        }
        Ok(())
    }

    /// The event source of this hook's deliveries.
    pub fn source(&self) -> String {
        format!("/hooks/{}", self.name)
    }

    /// Checks `delivery`'s signature with `secret` (the value of the platform secret the hook
    /// names; `None` for [`Verify::None`]) at `now`.
    pub fn verify(
        &self,
        delivery: &Delivery<'_>,
        secret: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> std::result::Result<(), Refusal> {
        let key = || secret.ok_or_else(|| Refusal::Signature("no signing secret".into()));
        let header = |name: &str| {
            delivery
                .header(name)
                .ok_or_else(|| Refusal::Signature(format!("the {name} header is missing")))
        };
        match &self.verify {
            Verify::None => Ok(()),
            Verify::Github { .. } => {
                let value = header("X-Hub-Signature-256")?;
                let hex_mac = value.strip_prefix("sha256=").ok_or_else(|| {
                    Refusal::Signature("X-Hub-Signature-256 does not start with sha256=".into())
                })?;
                check_mac(
                    hmac::HMAC_SHA256,
                    key()?,
                    &[delivery.body],
                    &decode_hex(hex_mac)?,
                )
            }
            Verify::Stripe {
                tolerance_seconds, ..
            } => {
                let value = header("Stripe-Signature")?;
                let mut timestamp = None;
                let mut macs = Vec::new();
                for part in value.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", t)) => timestamp = Some(t),
                        Some(("v1", mac)) => macs.push(mac),
                        _ => {}
                    }
                }
                let timestamp = timestamp.ok_or_else(|| {
                    Refusal::Signature("Stripe-Signature has no timestamp (t=)".into())
                })?;
                check_fresh(timestamp, *tolerance_seconds, now)?;
                if macs.is_empty() {
                    return Err(Refusal::Signature(
                        "Stripe-Signature has no v1 signature".into(),
                    ));
                }
                let key = key()?;
                let signed: [&[u8]; 3] = [timestamp.as_bytes(), b".", delivery.body];
                // Stripe sends several v1 signatures while a secret is rolled: any one may match.
                let mut matched = false;
                for mac in macs {
                    if let Ok(mac) = decode_hex(mac) {
                        matched |= check_mac(hmac::HMAC_SHA256, key, &signed, &mac).is_ok();
                    }
                }
                if matched {
                    Ok(())
                } else {
                    Err(Refusal::Signature(
                        "no v1 signature in Stripe-Signature matches".into(),
                    ))
                }
            }
            Verify::Slack {
                tolerance_seconds, ..
            } => verify_slack(delivery, key()?, *tolerance_seconds, now),
            Verify::Gitlab { .. } => {
                let token = header("X-Gitlab-Token")?;
                // Digests first: equal lengths, so the comparison reveals nothing of the length.
                let given = Sha256::digest(token.as_bytes());
                let expected = Sha256::digest(key()?);
                if bool::from(given.ct_eq(&expected)) {
                    Ok(())
                } else {
                    Err(Refusal::Signature("X-Gitlab-Token does not match".into()))
                }
            }
            Verify::Hmac {
                header: name,
                algorithm,
                encoding,
                prefix,
                ..
            } => {
                let value = header(name)?;
                let encoded = value.strip_prefix(prefix.as_str()).ok_or_else(|| {
                    Refusal::Signature(format!("{name} does not start with {prefix:?}"))
                })?;
                let mac = match encoding {
                    MacEncoding::Hex => decode_hex(encoded)?,
                    MacEncoding::Base64 => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD
                            .decode(encoded.trim())
                            .map_err(|_| {
                                Refusal::Signature(format!("{name} is not valid base64"))
                            })?
                    }
                };
                let algorithm = match algorithm {
                    HmacAlgorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                    HmacAlgorithm::Sha256 => hmac::HMAC_SHA256,
                    HmacAlgorithm::Sha384 => hmac::HMAC_SHA384,
                    HmacAlgorithm::Sha512 => hmac::HMAC_SHA512,
                };
                check_mac(algorithm, key()?, &[delivery.body], &mac)
            }
        }
    }

    /// Turns a verified `delivery` into the event published to `fx.events`.
    pub fn transform(&self, delivery: &Delivery<'_>) -> std::result::Result<Event, Refusal> {
        let malformed = |m: String| Refusal::Malformed(m);
        let mut made = Made {
            ty: RECEIVED_TYPE.to_string(),
            id: None,
            subject: None,
            time: None,
        };
        match &self.transform {
            Transform::Github => {
                let event = delivery
                    .header("X-GitHub-Event")
                    .ok_or_else(|| malformed("the X-GitHub-Event header is missing".into()))?;
                let payload = github_payload(delivery)?;
                made.ty = format!("com.github.{}", type_segment("X-GitHub-Event", event)?);
                if let Some(action) = payload.get("action").and_then(|a| a.as_str()) {
                    made.ty = format!("{}.{}", made.ty, type_segment("action", action)?);
                }
                made.id = Some(
                    delivery
                        .header("X-GitHub-Delivery")
                        .ok_or_else(|| malformed("the X-GitHub-Delivery header is missing".into()))?
                        .to_string(),
                );
                made.subject = text_at(&payload, "/repository/full_name");
            }
            Transform::Stripe => {
                let payload = json_body(delivery)?;
                let ty = text_at(&payload, "/type")
                    .ok_or_else(|| malformed("the Stripe event has no type".into()))?;
                made.ty = format!("com.stripe.{}", type_segment("type", &ty)?);
                made.id = Some(
                    text_at(&payload, "/id")
                        .ok_or_else(|| malformed("the Stripe event has no id".into()))?,
                );
                made.subject = text_at(&payload, "/data/object/id");
                made.time = payload
                    .get("created")
                    .and_then(|c| c.as_i64())
                    .and_then(|c| Utc.timestamp_opt(c, 0).single());
            }
            Transform::Gitlab => {
                let payload = json_body(delivery)?;
                let kind = text_at(&payload, "/object_kind")
                    .or_else(|| text_at(&payload, "/event_type"))
                    .ok_or_else(|| malformed("the GitLab event has no object_kind".into()))?;
                made.ty = format!("com.gitlab.{}", type_segment("object_kind", &kind)?);
                if let Some(action) = text_at(&payload, "/object_attributes/action") {
                    made.ty = format!("{}.{}", made.ty, type_segment("action", &action)?);
                }
                made.id = delivery
                    .header("Idempotency-Key")
                    .or_else(|| delivery.header("X-Gitlab-Event-UUID"))
                    .map(str::to_string);
                made.subject = text_at(&payload, "/project/path_with_namespace");
            }
            Transform::Json {
                ty,
                type_pointer,
                type_prefix,
                id_pointer,
                id_header,
                subject_pointer,
            } => {
                let payload = json_body(delivery)?;
                made.ty = match (ty, type_pointer) {
                    (Some(ty), _) => ty.clone(),
                    (None, Some(pointer)) => {
                        let found = text_at(&payload, pointer).ok_or_else(|| {
                            malformed(format!("the body has no text at {pointer} (the type)"))
                        })?;
                        format!("{type_prefix}{}", type_segment("type", &found)?)
                    }
                    (None, None) => RECEIVED_TYPE.to_string(),
                };
                made.id = match (id_pointer, id_header) {
                    (Some(pointer), _) => Some(text_at(&payload, pointer).ok_or_else(|| {
                        malformed(format!(
                            "the body has no text or number at {pointer} (the id)"
                        ))
                    })?),
                    (None, Some(h)) => Some(
                        delivery
                            .header(h)
                            .ok_or_else(|| malformed(format!("the {h} header is missing")))?
                            .to_string(),
                    ),
                    (None, None) => None,
                };
                made.subject = subject_pointer
                    .as_deref()
                    .and_then(|p| text_at(&payload, p));
            }
            Transform::Raw { id_header } => {
                if let Some(h) = id_header {
                    made.id = Some(
                        delivery
                            .header(h)
                            .ok_or_else(|| malformed(format!("the {h} header is missing")))?
                            .to_string(),
                    );
                }
            }
        }
        self.build(delivery, made)
    }

    fn build(&self, delivery: &Delivery<'_>, made: Made) -> std::result::Result<Event, Refusal> {
        let id = made.id.unwrap_or_else(|| delivery.body_digest());
        if id.is_empty() {
            return Err(Refusal::Malformed("the delivery's id is empty".into()));
        }
        let mut builder = EventBuilderV10::new()
            .id(id)
            .source(self.source())
            .ty(made.ty)
            .time(made.time.unwrap_or(delivery.received))
            .extension(HOOK_EXTENSION, self.name.as_str());
        if let Some(subject) = made.subject {
            builder = builder.subject(subject);
        }
        let headers = self.kept_headers(delivery);
        if !headers.is_empty() {
            let json = serde_json::to_string(&headers).unwrap_or_default();
            builder = builder.extension(HEADERS_EXTENSION, json);
        }
        let content_type = delivery
            .header("content-type")
            .unwrap_or("application/octet-stream")
            .to_string();
        let mut event = builder
            .build()
            .map_err(|e| Refusal::Malformed(format!("the delivery makes no valid event: {e}")))?;
        event.set_data(content_type, delivery.body.to_vec());
        crate::event::validate(&event)
            .map_err(|e| Refusal::Malformed(format!("the delivery makes no valid event: {e}")))?;
        Ok(event)
    }

    /// The headers kept with the event: the vendor's and `keep_headers`, lowercase names,
    /// within an attribute's size (the rest dropped).
    fn kept_headers(&self, delivery: &Delivery<'_>) -> BTreeMap<String, String> {
        let vendor: &[&str] = match (&self.transform, &self.verify) {
            (Transform::Github, _) => &["x-github-event", "x-github-delivery", "x-github-hook-id"],
            (Transform::Gitlab, _) => &["x-gitlab-event", "x-gitlab-event-uuid", "idempotency-key"],
            (Transform::Stripe, _) => &["stripe-signature"],
            (_, Verify::Slack { .. }) => &["x-slack-request-timestamp", "x-slack-signature"],
            _ => &[],
        };
        let mut kept = BTreeMap::new();
        let mut size = 2;
        let wanted = vendor
            .iter()
            .map(|h| h.to_string())
            .chain(self.keep_headers.iter().map(|h| h.to_ascii_lowercase()));
        for name in wanted {
            if kept.contains_key(&name) {
                continue;
            }
            let Some(value) = delivery.header(&name) else {
                continue;
            };
            if value.chars().any(char::is_control) {
                continue;
            }
            let cost = name.len() + value.len() + 6;
            if size + cost > MAX_HEADERS_JSON {
                tracing::debug!(hook = %self.name, header = %name, "a kept header does not fit the event's attribute; dropped");
                continue;
            }
            size += cost;
            kept.insert(name, value.to_string());
        }
        kept
    }
}

impl Verify {
    /// The platform secret this check needs, if any.
    pub fn secret(&self) -> Option<&str> {
        match self {
            Verify::Github { secret }
            | Verify::Stripe { secret, .. }
            | Verify::Slack { secret, .. }
            | Verify::Gitlab { secret }
            | Verify::Hmac { secret, .. } => Some(secret),
            Verify::None => None,
        }
    }

    /// The check's name, for metrics and the UI.
    pub fn kind(&self) -> &'static str {
        match self {
            Verify::Github { .. } => "github",
            Verify::Stripe { .. } => "stripe",
            Verify::Slack { .. } => "slack",
            Verify::Gitlab { .. } => "gitlab",
            Verify::Hmac { .. } => "hmac",
            Verify::None => "none",
        }
    }
}

impl Transform {
    /// The transform's name, for the UI.
    pub fn kind(&self) -> &'static str {
        match self {
            Transform::Github => "github",
            Transform::Stripe => "stripe",
            Transform::Gitlab => "gitlab",
            Transform::Json { .. } => "json",
            Transform::Raw { .. } => "raw",
        }
    }
}

struct Made {
    ty: String,
    id: Option<String>,
    subject: Option<String>,
    time: Option<DateTime<Utc>>,
}

/// Checks a request signed with a Slack app's signing secret: `X-Slack-Signature:
/// v0=<hex HMAC-SHA256 of "v0:ts:body">` with `X-Slack-Request-Timestamp: ts` within
/// `tolerance` seconds of `now`. Webhooks and the Slack chat adapter share it.
pub fn verify_slack(
    delivery: &Delivery<'_>,
    secret: &[u8],
    tolerance: u64,
    now: DateTime<Utc>,
) -> std::result::Result<(), Refusal> {
    let header = |name: &str| {
        delivery
            .header(name)
            .ok_or_else(|| Refusal::Signature(format!("the {name} header is missing")))
    };
    let timestamp = header("X-Slack-Request-Timestamp")?;
    check_fresh(timestamp, tolerance, now)?;
    let value = header("X-Slack-Signature")?;
    let hex_mac = value
        .strip_prefix("v0=")
        .ok_or_else(|| Refusal::Signature("X-Slack-Signature does not start with v0=".into()))?;
    let signed: [&[u8]; 4] = [b"v0:", timestamp.as_bytes(), b":", delivery.body];
    check_mac(hmac::HMAC_SHA256, secret, &signed, &decode_hex(hex_mac)?)
}

/// Signs `parts` (concatenated) with `key` and compares with `mac` in constant time.
fn check_mac(
    algorithm: hmac::Algorithm,
    key: &[u8],
    parts: &[&[u8]],
    mac: &[u8],
) -> std::result::Result<(), Refusal> {
    let key = hmac::Key::new(algorithm, key);
    let mut context = hmac::Context::with_key(&key);
    for part in parts {
        context.update(part);
    }
    let expected = context.sign();
    if bool::from(expected.as_ref().ct_eq(mac)) {
        Ok(())
    } else {
        Err(Refusal::Signature("the signature does not match".into()))
    }
}

fn decode_hex(text: &str) -> std::result::Result<Vec<u8>, Refusal> {
    hex::decode(text.trim())
        .map_err(|_| Refusal::Signature("the signature is not hexadecimal".into()))
}

/// Checks a signed Unix timestamp is within `tolerance` seconds of `now` (either way: a
/// sender's clock may run ahead).
fn check_fresh(
    timestamp: &str,
    tolerance: u64,
    now: DateTime<Utc>,
) -> std::result::Result<(), Refusal> {
    let t: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Refusal::Signature(format!("timestamp {timestamp:?} is not a number")))?;
    let age = now.timestamp().saturating_sub(t).unsigned_abs();
    if age > tolerance {
        return Err(Refusal::Signature(format!(
            "the signed timestamp is {age} s from now; at most {tolerance} s are accepted (a replayed or delayed delivery)"
        )));
    }
    Ok(())
}

fn json_body(delivery: &Delivery<'_>) -> std::result::Result<serde_json::Value, Refusal> {
    serde_json::from_slice(delivery.body)
        .map_err(|e| Refusal::Malformed(format!("the body is not JSON: {e}")))
}

/// GitHub's payload: the JSON body, or the `payload` field of a form-encoded one.
fn github_payload(delivery: &Delivery<'_>) -> std::result::Result<serde_json::Value, Refusal> {
    let form = delivery
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return json_body(delivery);
    }
    let payload = url::form_urlencoded::parse(delivery.body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| Refusal::Malformed("the form has no payload field".into()))?;
    serde_json::from_str(&payload)
        .map_err(|e| Refusal::Malformed(format!("the payload field is not JSON: {e}")))
}

/// The text (or number, as text) at JSON `pointer`.
fn text_at(value: &serde_json::Value, pointer: &str) -> Option<String> {
    match value.pointer(pointer)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A piece of an event type taken from a delivery: lowercase letters, digits, `_`, `-` and
/// `.`, at most 64 characters (a sender does not choose arbitrary types).
fn type_segment(what: &str, text: &str) -> std::result::Result<String, Refusal> {
    let lower = text.trim().to_ascii_lowercase().replace(' ', "_");
    let fine = !lower.is_empty()
        && lower.len() <= MAX_TYPE_SEGMENT
        && lower
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'));
    if fine {
        Ok(lower)
    } else {
        Err(Refusal::Malformed(format!(
            "{what} {:?} is not an event type segment (letters, digits, '_', '-', '.'; at most {MAX_TYPE_SEGMENT})",
            text.chars().take(80).collect::<String>()
        )))
    }
}

fn validate_type(field: &str, ty: &str) -> Result<()> {
    type_segment(field, ty)
        .map(|_| ())
        .map_err(|r| Error::invalid(r.reason().to_string()))
}

fn validate_header_name(field: &str, name: &str) -> Result<()> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if fine {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field}: {name:?} is not a header name (letters, digits, '-'; at most 64)"
        )))
    }
}

/// A token bucket per hook, kept by each server process.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

impl Bucket {
    /// A full bucket for `rate`.
    pub fn full(rate: &RateLimit, now: std::time::Instant) -> Self {
        Bucket {
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    /// Takes a token at `now`; when none is left, how long until one is.
    pub fn take(
        &mut self,
        rate: &RateLimit,
        now: std::time::Instant,
    ) -> std::result::Result<(), std::time::Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / rate.per_second;
            Err(std::time::Duration::from_secs_f64(wait))
        }
    }
}

#[cfg(test)]
mod tests;
