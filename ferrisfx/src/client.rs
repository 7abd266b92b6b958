//! The commands that talk to a running management server over its REST API.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use fx_core::handler::{AttributeMatch, Filter, Handler, PackageRef};
use serde_json::Value;

/// A client of the REST API.
pub struct Api {
    base: String,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer`, when there is one.
    token: Option<String>,
}

/// Flags of `ferrisfx handler create`.
#[derive(Debug, clap::Args)]
pub struct HandlerArgs {
    /// Read the whole handler (JSON) from this file instead of the flags below.
    #[arg(long, conflicts_with_all = ["name", "package"])]
    pub file: Option<PathBuf>,
    /// Handler name.
    #[arg(long, required_unless_present = "file")]
    pub name: Option<String>,
    /// Package to run, `name` or `name@version-or-alias` (default alias `latest`).
    #[arg(long, required_unless_present = "file")]
    pub package: Option<String>,
    /// Match events whose `type` equals this.
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Match events whose `type` starts with this.
    #[arg(long)]
    pub type_prefix: Option<String>,
    /// Match events whose `source` starts with this.
    #[arg(long)]
    pub source_prefix: Option<String>,
    /// Executor pool.
    #[arg(long, default_value = fx_core::handler::DEFAULT_POOL)]
    pub pool: String,
    /// A configuration value handed to the function, `key=value` (repeat for more).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// A secret the handler grants its function, by name (repeat for more); the package must
    /// declare it and the executors hold its value.
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
    /// A host the function may send HTTP requests to, `host` or `host:port` (repeat for more);
    /// the package must declare the `wasi:http` capability.
    #[arg(long = "allow-http", value_name = "HOST")]
    pub http_allow: Vec<String>,
}

/// Flags of `ferrisfx emit`.
#[derive(Debug, clap::Args)]
pub struct EmitArgs {
    /// Event type.
    #[arg(long = "type")]
    pub event_type: String,
    /// Event source.
    #[arg(long, default_value = "/cli")]
    pub source: String,
    /// Event id (a random one when absent).
    #[arg(long)]
    pub id: Option<String>,
    /// Event subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// JSON data.
    #[arg(long)]
    pub data: Option<String>,
}

impl Api {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Self {
        Api::with_token(base, None)
    }

    /// A client of the server at `base` that authenticates with `token`.
    pub fn with_token(base: &str, token: Option<String>) -> Self {
        Api {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            token,
        }
    }

    /// The URL of API path `path` (e.g. `/secrets`).
    /// The API URL of entry `name` of `collection` (`/hooks`), the name escaped as one path
    /// segment.
    pub(crate) fn entry_url(&self, collection: &str, name: &str) -> anyhow::Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&self.url(collection)).context("the server's URL")?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("the server's URL cannot take a path"))?
            .push(name);
        Ok(url)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// The HTTP client requests are built with.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends `request` with the token; the answer's JSON, or the server's error message.
    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let body = self
            .respond(request)
            .await?
            .text()
            .await
            .context("reading the server's response")?;
        Ok(serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }

    /// Sends `request` with the token; the successful response (to read as bytes, say), or
    /// the server's error message.
    pub(crate) async fn respond(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_connect() || e.is_timeout() => {
                return Err(
                    anyhow::Error::new(e).context(crate::exit::Failure::Unreachable {
                        server: self.base.clone(),
                    }),
                )
            }
            Err(e) => return Err(anyhow::Error::new(e).context("sending the request")),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response
            .text()
            .await
            .context("reading the server's response")?;
        let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        let message = if status == reqwest::StatusCode::UNAUTHORIZED {
            format!(
                "{message} (sign in with `ferrisfx login --user <name> --password-stdin`, or set FX_TOKEN)"
            )
        } else {
            message
        };
        Err(crate::exit::Failure::Api { status, message }.into())
    }

    /// `login`: trades a name and password for a token and keeps it for this server.
    pub async fn login(&self, user: &str, password: &str) -> anyhow::Result<()> {
        let v = self
            .send(
                self.http
                    .post(self.url("/login"))
                    .json(&serde_json::json!({"name": user, "password": password})),
            )
            .await?;
        let token = v["token"]
            .as_str()
            .context("the server answered no token")?;
        let path = crate::login::remember(&self.base, token)?;
        println!(
            "signed in to {} as {user}; token kept in {} (until {})",
            self.base,
            path.display(),
            v["record"]["expires_at"].as_str().unwrap_or("?")
        );
        Ok(())
    }

    /// `logout`: revokes the kept token and forgets it.
    pub async fn logout(&self) -> anyhow::Result<()> {
        let Some(token) = crate::login::forget(&self.base)? else {
            println!("not signed in to {}", self.base);
            return Ok(());
        };
        let id = fx_core::identity::credentials::Token::parse(&token)
            .map(|t| t.id().to_string())
            .unwrap_or_default();
        let api = Api::with_token(&self.base, Some(token));
        match api
            .send(api.http.delete(api.url(&format!("/tokens/{id}"))))
            .await
        {
            Ok(_) => println!("signed out of {}: token revoked and forgotten", self.base),
            Err(e) => println!("token forgotten; revoking it failed: {e:#}"),
        }
        Ok(())
    }

    /// `whoami`.
    pub async fn whoami(&self) -> anyhow::Result<()> {
        let v = self.send(self.http.get(self.url("/me"))).await?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        Ok(())
    }

    /// `package upload`.
    pub async fn upload(&self, file: &Path) -> anyhow::Result<()> {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let v = self
            .send(
                self.http
                    .post(self.url("/packages"))
                    .header("content-type", "application/octet-stream")
                    .body(bytes),
            )
            .await?;
        println!(
            "uploaded {}@{} (sha256 {})",
            v["name"].as_str().unwrap_or("?"),
            v["version"].as_str().unwrap_or("?"),
            v["digest"].as_str().unwrap_or("?")
        );
        Ok(())
    }

    /// `package alias`.
    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> anyhow::Result<()> {
        self.send(
            self.http
                .put(self.url(&format!("/packages/{name}/aliases/{alias}")))
                .json(&serde_json::json!({ "version": version })),
        )
        .await?;
        println!("{name}@{alias} -> {version}");
        Ok(())
    }

    /// `handler create`.
    pub async fn create_handler(&self, args: HandlerArgs) -> anyhow::Result<()> {
        let handler: Value = match &args.file {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not valid JSON", file.display()))?
            }
            None => serde_json::to_value(handler_from_flags(&args)?)?,
        };
        let v = self
            .send(self.http.post(self.url("/handlers")).json(&handler))
            .await?;
        println!(
            "created handler {}",
            v["handler"]["name"]
                .as_str()
                .or(handler["name"].as_str())
                .unwrap_or("?")
        );
        Ok(())
    }

    /// `handler delete`.
    pub async fn delete_handler(&self, name: &str) -> anyhow::Result<()> {
        self.send(self.http.delete(self.url(&format!("/handlers/{name}"))))
            .await?;
        println!("deleted handler {name}");
        Ok(())
    }

    /// `emit`: sends a structured-mode CloudEvent.
    pub async fn emit(&self, args: EmitArgs) -> anyhow::Result<()> {
        let id = args.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut event = serde_json::json!({
            "specversion": "1.0",
            "id": id,
            "source": args.source,
            "type": args.event_type,
        });
        if let Some(subject) = args.subject {
            event["subject"] = Value::String(subject);
        }
        if let Some(data) = args.data {
            let data: Value = serde_json::from_str(&data).context("--data is not valid JSON")?;
            event["datacontenttype"] = Value::String("application/json".into());
            event["data"] = data;
        }
        self.send(
            self.http
                .post(self.url("/events"))
                .header("content-type", fx_core::event::STRUCTURED_CONTENT_TYPE)
                .body(event.to_string()),
        )
        .await?;
        println!("sent event {id}");
        Ok(())
    }
}

/// Builds a handler from `handler create` flags.
pub fn handler_from_flags(args: &HandlerArgs) -> anyhow::Result<Handler> {
    let (Some(name), Some(package)) = (&args.name, &args.package) else {
        bail!("--name and --package are required without --file");
    };
    let package = match package.split_once('@') {
        Some((name, version)) => PackageRef {
            name: name.into(),
            version: version.into(),
        },
        None => PackageRef {
            name: package.clone(),
            version: fx_core::package::LATEST_ALIAS.into(),
        },
    };
    let m = |attribute: &str, value: &String| AttributeMatch {
        attribute: attribute.into(),
        value: value.clone(),
    };
    let mut filters = Vec::new();
    filters.extend(
        args.event_type
            .as_ref()
            .map(|t| Filter::Exact(m("type", t))),
    );
    filters.extend(
        args.type_prefix
            .as_ref()
            .map(|t| Filter::Prefix(m("type", t))),
    );
    filters.extend(
        args.source_prefix
            .as_ref()
            .map(|s| Filter::Prefix(m("source", s))),
    );
    if filters.is_empty() {
        bail!("give at least one of --type, --type-prefix, --source-prefix (or --file)");
    }
    let handler = Handler {
        name: name.clone(),
        description: String::new(),
        filter: Filter::All(filters),
        package,
        pool: args.pool.clone(),
        limits: Default::default(),
        retry: Default::default(),
        enabled: true,
        reuse_instances: false,
        config: args
            .config
            .iter()
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => Ok((k.to_string(), v.to_string())),
                None => bail!("--config wants key=value, got {pair:?}"),
            })
            .collect::<anyhow::Result<_>>()?,
        secrets: args.secrets.iter().cloned().collect(),
        http_allow: args.http_allow.iter().cloned().collect(),
    };
    handler.validate()?;
    Ok(handler)
}
