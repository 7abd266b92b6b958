//! `ferrisfx hook`: create, list, show and delete webhooks on the management server. A webhook
//! is an endpoint, `POST <server>/hooks/<name>`, that checks each delivery's signature with a
//! platform secret and turns it into a CloudEvent from `/hooks/<name>`: a handler filtered on
//! its type (`com.github.push`, `com.stripe.invoice.paid`…) runs on it.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use fx_core::hook::{
    Hook, RateLimit, Transform, Verify, DEFAULT_MAX_BODY_BYTES, DEFAULT_TOLERANCE_SECONDS,
    RECEIVED_TYPE,
};
use serde_json::Value;

use crate::client::Api;
use crate::output::{self, cell, yes_no, Format, ListArgs, ShowArgs, Table, View};

/// Webhook commands.
#[derive(Debug, clap::Subcommand)]
pub enum HookCommand {
    /// Create a webhook from flags (--verify and, unless none, --secret) or from a JSON file;
    /// prints the URL senders post to.
    Create(Box<CreateArgs>),
    /// List the webhooks with the URLs senders post to.
    List(ListArgs),
    /// Show one webhook with its URL (JSON by default; `-o table` for its row of the list).
    Show {
        /// Webhook name.
        name: String,
        /// Output format.
        #[command(flatten)]
        output: ShowArgs,
    },
    /// Delete a webhook: its URL answers 404 from then on.
    Delete {
        /// Webhook name.
        name: String,
    },
}

/// How a delivery is checked (`--verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyKind {
    /// GitHub's `X-Hub-Signature-256`.
    Github,
    /// Stripe's `Stripe-Signature` (timestamped).
    Stripe,
    /// Slack's `X-Slack-Signature` (timestamped).
    Slack,
    /// GitLab's `X-Gitlab-Token`.
    Gitlab,
    /// An HMAC-SHA256 of the body, hexadecimal, in the header `--header`.
    Hmac,
    /// No check: anyone who reaches the URL can post events (behind a checking proxy only).
    #[value(name = "none")]
    Unchecked,
}

/// How a delivery becomes an event (`--transform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransformKind {
    /// Type `com.github.<event>[.<action>]`, id `X-GitHub-Delivery`.
    Github,
    /// Type `com.stripe.<type>`, id the event's id.
    Stripe,
    /// Type `com.gitlab.<object_kind>[.<action>]`.
    Gitlab,
    /// Any JSON body: --type, or --type-pointer; the id at --id-pointer.
    Json,
    /// The body as it came, type `com.ferrisfx.webhook.received`.
    Raw,
}

/// Flags of `ferrisfx hook create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Webhook name (lowercase letters, digits, '-', '_', '.'): senders post to
    /// `<server>/hooks/<name>`.
    #[arg(required_unless_present = "file")]
    pub name: Option<String>,
    /// Read the whole webhook (JSON, as `POST /api/v1/hooks` takes it) from this file instead
    /// of the flags.
    #[arg(long, conflicts_with_all = [
        "name", "verify", "secret", "transform", "event_type", "type_pointer", "id_pointer",
        "header", "rate", "burst", "max_body_bytes", "keep_headers", "description",
    ])]
    pub file: Option<PathBuf>,
    /// How a delivery proves it comes from the sender.
    #[arg(long, value_enum, required_unless_present = "file")]
    pub verify: Option<VerifyKind>,
    /// The platform secret holding the signing secret or token (`ferrisfx secret set NAME`);
    /// needed unless --verify none.
    #[arg(long, value_name = "NAME")]
    pub secret: Option<String>,
    /// How a delivery becomes an event (default: json with --type or --type-pointer, else the
    /// vendor of --verify for github, stripe and gitlab, else raw).
    #[arg(long, value_enum)]
    pub transform: Option<TransformKind>,
    /// With --transform json: the events' type.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// With --transform json: a JSON pointer to the type in the body (`/event/type`).
    #[arg(long, value_name = "POINTER")]
    pub type_pointer: Option<String>,
    /// With --transform json: a JSON pointer to the delivery's id in the body (`/id`).
    #[arg(long, value_name = "POINTER")]
    pub id_pointer: Option<String>,
    /// With --verify hmac: the header carrying the hexadecimal HMAC-SHA256 of the body.
    #[arg(long, value_name = "HEADER")]
    pub header: Option<String>,
    /// Deliveries taken per second (default 10).
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Deliveries taken at once before --rate applies (default 20).
    #[arg(long)]
    pub burst: Option<u32>,
    /// The largest body taken; larger ones get 413 (default 1 MiB).
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<u64>,
    /// A request header kept with the events, in their `webhookheaders` extension (repeat for
    /// more); the vendor's own are kept anyway.
    #[arg(long = "keep-header", value_name = "HEADER")]
    pub keep_headers: Vec<String>,
    /// Free text for people.
    #[arg(long)]
    pub description: Option<String>,
}

/// Runs a webhook command against `api`, printing to standard output.
pub async fn run(api: &Api, command: HookCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    execute(api, command, &mut out).await
}

/// Runs a webhook command against `api`, writing what it says to `out`.
pub async fn execute(api: &Api, command: HookCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        HookCommand::Create(args) => {
            let hook = match &args.file {
                Some(file) => hook_of_file(file)?,
                None => hook_of(&args)?,
            };
            let v = api
                .send(api.http().post(api.url("/hooks")).json(&hook))
                .await?;
            writeln!(
                out,
                "created webhook {} (revision {})",
                hook.name,
                v["revision"].as_u64().unwrap_or_default()
            )?;
            writeln!(out, "  senders post to: {}", url_of(api, &v))?;
            writeln!(
                out,
                "  events: type {}, source {}",
                event_types(&hook.transform),
                hook.source()
            )?;
        }
        HookCommand::List(args) => {
            let base = base_of(api);
            output::list(
                &args,
                "ferrisfx hook list",
                || api.send(api.http().get(api.url("/hooks"))),
                &|v| table(&base, v),
                out,
            )
            .await?;
        }
        HookCommand::Show { name, output } => {
            let base = base_of(api);
            let url = one(api, &name)?;
            let fetch = async {
                let mut v = api.send(api.http().get(url)).await?;
                let url = url_of(api, &v);
                if let Some(object) = v.as_object_mut() {
                    object.insert("url".into(), url.into());
                }
                Ok(v)
            };
            output::show(
                output.output.unwrap_or(Format::Json),
                fetch,
                &|v| table(&base, &serde_json::json!({ "hooks": [v] })),
                out,
            )
            .await?;
        }
        HookCommand::Delete { name } => {
            api.send(api.http().delete(one(api, &name)?)).await?;
            writeln!(out, "deleted webhook {name}")?;
        }
    }
    Ok(())
}

/// The API URL of webhook `name`, the name escaped as a path segment.
fn one(api: &Api, name: &str) -> anyhow::Result<reqwest::Url> {
    api.entry_url("/hooks", name)
}

/// The server's base URL, that webhook paths follow.
fn base_of(api: &Api) -> String {
    let api_root = api.url("");
    api_root
        .strip_suffix("/api/v1")
        .unwrap_or(&api_root)
        .to_string()
}

/// The URL senders post to: the server's base URL and the path the API answered.
fn url_of(api: &Api, v: &Value) -> String {
    url_at(&base_of(api), v)
}

/// The URL senders post to of webhook view `v` on the server at `base`.
fn url_at(base: &str, v: &Value) -> String {
    let path = v["path"].as_str().map_or_else(
        || format!("/hooks/{}", v["hook"]["name"].as_str().unwrap_or("?")),
        str::to_string,
    );
    format!("{base}{path}")
}

/// The webhook of `create`'s flags.
fn hook_of(args: &CreateArgs) -> anyhow::Result<Hook> {
    let Some(name) = args.name.clone() else {
        bail!("give the webhook's NAME, or --file");
    };
    let Some(kind) = args.verify else {
        bail!("give --verify (github, stripe, slack, gitlab, hmac or none)");
    };
    let secret = || -> anyhow::Result<String> {
        args.secret.clone().with_context(|| {
            format!(
                "--verify {} needs --secret NAME: the platform secret holding what the sender signs with (`ferrisfx secret set NAME`)",
                verify_name(kind)
            )
        })
    };
    if kind == VerifyKind::Unchecked && args.secret.is_some() {
        bail!("--secret goes with a signature check; --verify none checks nothing");
    }
    if kind != VerifyKind::Hmac && args.header.is_some() {
        bail!("--header names the signature header of --verify hmac");
    }
    let verify = match kind {
        VerifyKind::Github => Verify::Github { secret: secret()? },
        VerifyKind::Stripe => Verify::Stripe {
            secret: secret()?,
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
        },
        VerifyKind::Slack => Verify::Slack {
            secret: secret()?,
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
        },
        VerifyKind::Gitlab => Verify::Gitlab { secret: secret()? },
        VerifyKind::Hmac => Verify::Hmac {
            secret: secret()?,
            header: args.header.clone().context(
                "--verify hmac needs --header: the header carrying the signature (`X-Signature`)",
            )?,
            algorithm: Default::default(),
            encoding: Default::default(),
            prefix: String::new(),
        },
        VerifyKind::Unchecked => Verify::None,
    };
    let json_flags =
        args.event_type.is_some() || args.type_pointer.is_some() || args.id_pointer.is_some();
    let transform_kind = args.transform.unwrap_or(match kind {
        _ if json_flags => TransformKind::Json,
        VerifyKind::Github => TransformKind::Github,
        VerifyKind::Stripe => TransformKind::Stripe,
        VerifyKind::Gitlab => TransformKind::Gitlab,
        _ => TransformKind::Raw,
    });
    if transform_kind != TransformKind::Json && json_flags {
        bail!("--type, --type-pointer and --id-pointer go with --transform json");
    }
    let transform = match transform_kind {
        TransformKind::Github => Transform::Github,
        TransformKind::Stripe => Transform::Stripe,
        TransformKind::Gitlab => Transform::Gitlab,
        TransformKind::Json => {
            if args.event_type.is_none() && args.type_pointer.is_none() {
                bail!("--transform json needs --type TYPE or --type-pointer /path/to/type");
            }
            Transform::Json {
                ty: args.event_type.clone(),
                type_pointer: args.type_pointer.clone(),
                type_prefix: String::new(),
                id_pointer: args.id_pointer.clone(),
                id_header: None,
                subject_pointer: None,
            }
        }
        TransformKind::Raw => Transform::Raw { id_header: None },
    };
    let mut rate = RateLimit::default();
    if let Some(per_second) = args.rate {
        rate.per_second = per_second;
    }
    if let Some(burst) = args.burst {
        rate.burst = burst;
    }
    Ok(Hook {
        name,
        description: args.description.clone().unwrap_or_default(),
        verify,
        transform,
        keep_headers: args.keep_headers.clone(),
        rate,
        max_body_bytes: args.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        enabled: true,
    })
}

/// The webhook in JSON file `file`.
fn hook_of_file(file: &std::path::Path) -> anyhow::Result<Hook> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a webhook (JSON, as /api/v1/hooks takes it)",
            file.display()
        )
    })
}

fn verify_name(kind: VerifyKind) -> &'static str {
    match kind {
        VerifyKind::Github => "github",
        VerifyKind::Stripe => "stripe",
        VerifyKind::Slack => "slack",
        VerifyKind::Gitlab => "gitlab",
        VerifyKind::Hmac => "hmac",
        VerifyKind::Unchecked => "none",
    }
}

/// The event types a transform makes, for people.
fn event_types(transform: &Transform) -> String {
    match transform {
        Transform::Github => "com.github.<X-GitHub-Event>[.<action>]".into(),
        Transform::Stripe => "com.stripe.<type>".into(),
        Transform::Gitlab => "com.gitlab.<object_kind>[.<action>]".into(),
        Transform::Json { ty: Some(ty), .. } => ty.clone(),
        Transform::Json {
            type_pointer: Some(pointer),
            type_prefix,
            ..
        } => format!("{type_prefix}<the body's {pointer}>"),
        Transform::Json { .. } => "?".into(),
        Transform::Raw { .. } => RECEIVED_TYPE.into(),
    }
}

/// The webhooks of `GET /api/v1/hooks` (`{"hooks": [{"hook", "revision", "path"}],
/// "invalid"}`) as a table, URLs on the server at `base`.
fn table(base: &str, v: &Value) -> View {
    let mut table = Table::new(&[
        "name",
        "verify",
        "secret",
        "transform",
        "rate",
        "enabled",
        "url",
    ]);
    let rate = RateLimit::default();
    for h in v["hooks"].as_array().into_iter().flatten() {
        let hook = &h["hook"];
        let per_second = hook["rate"]["per_second"]
            .as_f64()
            .unwrap_or(rate.per_second);
        let burst = hook["rate"]["burst"]
            .as_u64()
            .unwrap_or(u64::from(rate.burst));
        table.push(vec![
            cell(&hook["name"]),
            cell(&hook["verify"]["kind"]),
            cell(&hook["verify"]["secret"]),
            cell(&hook["transform"]["kind"]),
            format!("{per_second}/s burst {burst}"),
            yes_no(&hook["enabled"], true),
            url_at(base, h),
        ]);
    }
    View::table(&table, "webhooks").with_notes(output::invalid_notes(v, "webhook"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::*;

    /// `ferrisfx hook <args>` parsed.
    fn parse(args: &[&str]) -> Result<HookCommand, clap::Error> {
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            command: HookCommand,
        }
        let argv = std::iter::once("hook").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.command)
    }

    fn created(args: &[&str]) -> anyhow::Result<Hook> {
        let mut argv = vec!["create"];
        argv.extend_from_slice(args);
        match parse(&argv)? {
            HookCommand::Create(args) => hook_of(&args),
            other => panic!("not a create: {other:?}"),
        }
    }

    #[test]
    fn vendor_flags_make_the_vendor_hook() {
        let hook = created(&["gh", "--verify", "github", "--secret", "gh-secret"]).unwrap();
        assert_eq!(
            hook.verify,
            Verify::Github {
                secret: "gh-secret".into()
            }
        );
        assert_eq!(hook.transform, Transform::Github, "the vendor's transform");
        assert_eq!(hook.rate, RateLimit::default());
        assert_eq!(hook.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        hook.validate().unwrap();
        // What the API receives: the model's own JSON.
        let body = serde_json::to_value(&hook).unwrap();
        assert_eq!(
            body,
            json!({
                "name": "gh",
                "verify": {"kind": "github", "secret": "gh-secret"},
                "transform": {"kind": "github"},
                "rate": {"per_second": 10.0, "burst": 20},
            })
        );

        let stripe = created(&[
            "pay",
            "--verify",
            "stripe",
            "--secret",
            "whsec",
            "--rate",
            "2.5",
            "--burst",
            "5",
            "--max-body-bytes",
            "4096",
            "--keep-header",
            "X-Request-Id",
            "--keep-header",
            "user-agent",
            "--description",
            "payments",
        ])
        .unwrap();
        assert!(
            matches!(stripe.verify, Verify::Stripe { tolerance_seconds, .. } if tolerance_seconds == DEFAULT_TOLERANCE_SECONDS)
        );
        assert_eq!(stripe.transform, Transform::Stripe);
        assert_eq!(
            stripe.rate,
            RateLimit {
                per_second: 2.5,
                burst: 5
            }
        );
        assert_eq!(stripe.max_body_bytes, 4096);
        assert_eq!(stripe.keep_headers, ["X-Request-Id", "user-agent"]);
        assert_eq!(stripe.description, "payments");
        stripe.validate().unwrap();
    }

    #[test]
    fn json_and_hmac_flags_make_a_generic_hook() {
        let hook = created(&[
            "orders",
            "--verify",
            "hmac",
            "--secret",
            "orders-key",
            "--header",
            "X-Signature",
            "--type-pointer",
            "/event",
            "--id-pointer",
            "/id",
        ])
        .unwrap();
        assert!(
            matches!(&hook.verify, Verify::Hmac { header, secret, .. } if header == "X-Signature" && secret == "orders-key")
        );
        assert_eq!(
            hook.transform,
            Transform::Json {
                ty: None,
                type_pointer: Some("/event".into()),
                type_prefix: String::new(),
                id_pointer: Some("/id".into()),
                id_header: None,
                subject_pointer: None,
            },
            "--type-pointer means a json transform"
        );
        hook.validate().unwrap();

        let open = created(&["open", "--verify", "none", "--type", "com.example.ping"]).unwrap();
        assert_eq!(open.verify, Verify::None);
        assert!(
            matches!(open.transform, Transform::Json { ty: Some(ref t), .. } if t == "com.example.ping")
        );
        let raw = created(&["raw", "--verify", "slack", "--secret", "slack"]).unwrap();
        assert_eq!(raw.transform, Transform::Raw { id_header: None });
    }

    #[test]
    fn contradictory_or_missing_flags_are_refused_with_the_reason() {
        let refused = |args: &[&str], reason: &str| {
            let e = created(args).unwrap_err().to_string();
            assert!(e.contains(reason), "{args:?}: {e}");
        };
        refused(
            &["gh", "--verify", "github"],
            "--verify github needs --secret",
        );
        refused(
            &["gh", "--verify", "none", "--secret", "s"],
            "checks nothing",
        );
        refused(
            &["gh", "--verify", "hmac", "--secret", "s"],
            "--verify hmac needs --header",
        );
        refused(
            &["gh", "--verify", "github", "--secret", "s", "--header", "X"],
            "--header names",
        );
        refused(
            &[
                "gh",
                "--verify",
                "github",
                "--secret",
                "s",
                "--transform",
                "github",
                "--type",
                "t",
            ],
            "go with --transform json",
        );
        refused(
            &["gh", "--verify", "none", "--transform", "json"],
            "needs --type",
        );
        // Clap's own checks: --verify is required, its kinds are listed, --file stands alone.
        assert!(parse(&["create", "gh"]).is_err());
        assert!(parse(&["create", "gh", "--verify", "gitub"]).is_err());
        assert!(parse(&["create", "gh", "--file", "hook.json"]).is_err());
        assert!(parse(&["create", "--file", "hook.json"]).is_ok());
    }

    #[test]
    fn a_file_holds_the_whole_hook() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook.json");
        std::fs::write(
            &file,
            r#"{"name": "ci", "verify": {"kind": "gitlab", "secret": "gl"}, "transform": {"kind": "gitlab"}, "keep_headers": ["x-gitlab-instance"]}"#,
        )
        .unwrap();
        let hook = hook_of_file(&file).unwrap();
        assert_eq!(hook.name, "ci");
        assert_eq!(hook.keep_headers, ["x-gitlab-instance"]);
        std::fs::write(&file, r#"{"name": "ci", "verify": {"kind": "gitlab"}}"#).unwrap();
        let e = format!("{:#}", hook_of_file(&file).unwrap_err());
        assert!(e.contains("is not a webhook"), "{e}");
    }

    /// `GET /api/v1/hooks` as the API answers it.
    fn listing() -> Value {
        json!({
            "revision": 5,
            "hooks": [
                {"hook": {"name": "gh", "verify": {"kind": "github", "secret": "gh-secret"},
                          "transform": {"kind": "github"},
                          "rate": {"per_second": 10.0, "burst": 20}},
                 "revision": 2, "path": "/hooks/gh"},
                {"hook": {"name": "open", "verify": {"kind": "none"},
                          "transform": {"kind": "json", "type": "com.example.ping"},
                          "rate": {"per_second": 0.5, "burst": 1}, "enabled": false},
                 "revision": 5, "path": "/hooks/open"},
            ],
            "invalid": [{"name": "bad", "reason": "missing field `verify`"}],
        })
    }

    #[test]
    fn the_list_is_a_table_and_the_documents_the_answer() {
        let view = table("http://fx:8080", &listing());
        assert_eq!(
            crate::output::testing::lines(&view),
            [
                "NAME  VERIFY  SECRET     TRANSFORM  RATE           ENABLED  URL",
                "gh    github  gh-secret  github     10/s burst 20  yes      http://fx:8080/hooks/gh",
                "open  none    -          json       0.5/s burst 1  no       http://fx:8080/hooks/open",
            ]
        );
        assert_eq!(
            view.notes,
            ["invalid webhook \"bad\" (skipped): missing field `verify`"]
        );
        let empty = table("http://fx:8080", &json!({"hooks": [], "invalid": []}));
        assert_eq!(empty.notes, ["no webhooks"]);
        crate::output::testing::assert_documents(&listing(), &|v| table("http://fx:8080", v));
    }

    /// Runs `ferrisfx hook <args>` against `api`; what it printed.
    async fn cli(api: &Api, args: &[&str]) -> anyhow::Result<String> {
        let command = parse(args)?;
        let mut out = Vec::new();
        execute(api, command, &mut out).await?;
        Ok(String::from_utf8(out)?)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn create_list_show_and_delete_against_a_dev_server() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = crate::settings::Settings {
            data_dir: dir.path().join("data"),
            example: false,
            ..Default::default()
        };
        settings.server.auth.enabled = false;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let platform = crate::dev::Platform::start(settings, listener, shutdown)
            .await
            .unwrap();
        let base = format!("http://{}", platform.addr);
        let api = Api::new(&base);
        let http = reqwest::Client::new();
        let answer = http
            .put(format!("{base}/api/v1/secrets/gh-secret"))
            .json(&json!({"value": "It's a Secret to Everybody", "pools": ["default"]}))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{answer:?}");

        assert_eq!(
            cli(&api, &["list"]).await.unwrap(),
            "",
            "`no webhooks` goes to stderr"
        );
        let out = cli(
            &api,
            &[
                "create",
                "gh",
                "--verify",
                "github",
                "--secret",
                "gh-secret",
            ],
        )
        .await
        .unwrap();
        assert!(out.starts_with("created webhook gh"), "{out}");
        assert!(
            out.contains(&format!("senders post to: {base}/hooks/gh\n")),
            "{out}"
        );
        assert!(out.contains("com.github.<X-GitHub-Event>"), "{out}");
        // The server's refusals come back with its reason.
        let e = cli(
            &api,
            &[
                "create",
                "gh",
                "--verify",
                "github",
                "--secret",
                "gh-secret",
            ],
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("409"), "{e}");
        let e = cli(
            &api,
            &[
                "create",
                "other",
                "--verify",
                "github",
                "--secret",
                "no-such-secret",
            ],
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let file = dir.path().join("hook.json");
        std::fs::write(
            &file,
            r#"{"name": "open", "verify": {"kind": "none"}, "transform": {"kind": "json", "type": "com.example.ping"}, "rate": {"per_second": 1, "burst": 2}, "enabled": false}"#,
        )
        .unwrap();
        let out = cli(&api, &["create", "--file", file.to_str().unwrap()])
            .await
            .unwrap();
        assert!(
            out.contains("type com.example.ping, source /hooks/open"),
            "{out}"
        );

        let listed = cli(&api, &["list"]).await.unwrap();
        assert_eq!(
            listed,
            format!(
                "NAME  VERIFY  SECRET     TRANSFORM  RATE           ENABLED  URL\n\
                 gh    github  gh-secret  github     10/s burst 20  yes      {base}/hooks/gh\n\
                 open  none    -          json       1/s burst 2    no       {base}/hooks/open\n"
            )
        );
        let listed: Value =
            serde_json::from_str(&cli(&api, &["list", "-o", "json"]).await.unwrap()).unwrap();
        assert_eq!(listed["hooks"][0]["path"], "/hooks/gh", "{listed}");
        let shown: Value =
            serde_json::from_str(&cli(&api, &["show", "gh"]).await.unwrap()).unwrap();
        assert_eq!(shown["hook"]["verify"]["secret"], "gh-secret", "{shown}");
        assert_eq!(shown["url"], format!("{base}/hooks/gh"), "{shown}");
        let row = cli(&api, &["show", "open", "-o", "table"]).await.unwrap();
        assert_eq!(
            row.lines().nth(1).unwrap(),
            format!("open  none    -       json       1/s burst 2  no       {base}/hooks/open")
        );
        let yaml: Value =
            serde_yaml_ng::from_str(&cli(&api, &["show", "gh", "-o", "yaml"]).await.unwrap())
                .unwrap();
        assert_eq!(yaml, shown);

        assert_eq!(
            cli(&api, &["delete", "gh"]).await.unwrap(),
            "deleted webhook gh\n"
        );
        let e = cli(&api, &["show", "gh"]).await.unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
        let e = cli(&api, &["delete", "../secrets/gh-secret"])
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("404"),
            "a name is one path segment: {e}"
        );
        cli(&api, &["delete", "open"]).await.unwrap();
        assert_eq!(cli(&api, &["list"]).await.unwrap(), "");
        platform.stop().await.unwrap();
    }
}
