//! `ferrisfx notification`: create, list, show and delete notification rules on the management
//! server. A rule tells someone when executions of the handlers it watches fail, are
//! dead-lettered or succeed: a JSON POST of the execution's summary signed with a platform
//! secret (`X-FerrisFX-Signature`), or a CloudEvent to an HTTP sink. What was sent about one
//! execution is on its page in the web UI and at `/api/v1/executions/<id>/notifications`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use fx_core::notify::{Outcome, Rule, Target};
use serde_json::Value;

use crate::client::Api;
use crate::output::{self, cell, yes_no, Format, ListArgs, ShowArgs, Table, View};

/// Notification rule commands.
#[derive(Debug, clap::Subcommand)]
pub enum NotificationCommand {
    /// Create a rule from flags (--url, and --on for what to send) or from a JSON file.
    Create(Box<CreateArgs>),
    /// List the rules.
    List(ListArgs),
    /// Show one rule with its revision (JSON by default; `-o table` for its row of the list).
    Show {
        /// Rule name.
        name: String,
        /// Output format.
        #[command(flatten)]
        output: ShowArgs,
    },
    /// Delete a rule: nothing more is sent for it.
    Delete {
        /// Rule name.
        name: String,
    },
}

/// What became of an execution (`--on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutcomeArg {
    /// Its last attempt failed and no retry follows.
    Failed,
    /// It failed for good and went to the dead-letter topic.
    #[value(name = "dead_lettered", alias = "dead-lettered")]
    DeadLettered,
    /// Its last attempt succeeded.
    Succeeded,
}

impl From<OutcomeArg> for Outcome {
    fn from(outcome: OutcomeArg) -> Outcome {
        match outcome {
            OutcomeArg::Failed => Outcome::Failed,
            OutcomeArg::DeadLettered => Outcome::DeadLettered,
            OutcomeArg::Succeeded => Outcome::Succeeded,
        }
    }
}

/// Flags of `ferrisfx notification create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Rule name (lowercase letters, digits, '-', '_', '.').
    #[arg(required_unless_present = "file")]
    pub name: Option<String>,
    /// Read the whole rule (JSON, as `POST /api/v1/notifications` takes it) from this file
    /// instead of the flags.
    #[arg(long, conflicts_with_all = [
        "name", "handlers", "on", "url", "secret", "cloudevent", "max_attempts", "description",
    ])]
    pub file: Option<PathBuf>,
    /// A handler whose executions it watches (repeat for more); `*` for every handler, the
    /// default.
    #[arg(long = "handler", value_name = "NAME")]
    pub handlers: Vec<String>,
    /// An outcome it sends (repeat for more; default failed).
    #[arg(long, value_enum, value_name = "OUTCOME")]
    pub on: Vec<OutcomeArg>,
    /// Where it sends (http or https).
    #[arg(long, required_unless_present = "file")]
    pub url: Option<String>,
    /// The platform secret whose value signs each body (`ferrisfx secret set NAME`); unsigned
    /// without it.
    #[arg(long, value_name = "NAME")]
    pub secret: Option<String>,
    /// Send a CloudEvent (`com.ferrisfx.execution.<outcome>`, binary mode) to an HTTP sink
    /// instead of a JSON webhook.
    #[arg(long)]
    pub cloudevent: bool,
    /// Attempts per notification before it is given up (1 to 20; default 5).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Free text for people.
    #[arg(long)]
    pub description: Option<String>,
}

/// Runs a notification command against `api`, printing to standard output.
pub async fn run(api: &Api, command: NotificationCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    execute(api, command, &mut out).await
}

/// Runs a notification command against `api`, writing what it says to `out`.
pub async fn execute(
    api: &Api,
    command: NotificationCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        NotificationCommand::Create(args) => {
            let rule = match &args.file {
                Some(file) => rule_of_file(file)?,
                None => rule_of(&args)?,
            };
            let v = api
                .send(api.http().post(api.url("/notifications")).json(&rule))
                .await?;
            writeln!(
                out,
                "created notification rule {} (revision {})",
                rule.name,
                v["revision"].as_u64().unwrap_or_default()
            )?;
            let stored = serde_json::to_value(&rule)?;
            writeln!(out, "  {}", summary(&stored))?;
        }
        NotificationCommand::List(args) => {
            output::list(
                &args,
                "ferrisfx notification list",
                || api.send(api.http().get(api.url("/notifications"))),
                &table,
                out,
            )
            .await?;
        }
        NotificationCommand::Show { name, output } => {
            output::show(
                output.output.unwrap_or(Format::Json),
                api.send(api.http().get(one(api, &name)?)),
                &|v| table(&serde_json::json!({ "notifications": [v] })),
                out,
            )
            .await?;
        }
        NotificationCommand::Delete { name } => {
            api.send(api.http().delete(one(api, &name)?)).await?;
            writeln!(out, "deleted notification rule {name}")?;
        }
    }
    Ok(())
}

/// The API URL of rule `name`, the name escaped as a path segment.
fn one(api: &Api, name: &str) -> anyhow::Result<reqwest::Url> {
    api.entry_url("/notifications", name)
}

/// The rule of `create`'s flags.
fn rule_of(args: &CreateArgs) -> anyhow::Result<Rule> {
    let Some(name) = args.name.clone() else {
        bail!("give the rule's NAME, or --file");
    };
    let Some(url) = args.url.clone() else {
        bail!("give --url: where the notifications go");
    };
    let handlers = if args.handlers.is_empty() {
        vec!["*".to_string()]
    } else {
        args.handlers.clone()
    };
    if handlers.len() > 1 && handlers.iter().any(|h| h == "*") {
        bail!("--handler '*' watches every handler: give it alone, or only names");
    }
    let on: BTreeSet<Outcome> = if args.on.is_empty() {
        [Outcome::Failed].into_iter().collect()
    } else {
        args.on.iter().copied().map(Outcome::from).collect()
    };
    let secret = args.secret.clone();
    let target = if args.cloudevent {
        Target::Cloudevent { url, secret }
    } else {
        Target::Webhook { url, secret }
    };
    Ok(Rule {
        name,
        description: args.description.clone().unwrap_or_default(),
        handlers,
        on,
        target,
        max_attempts: args.max_attempts.unwrap_or(5),
        enabled: true,
    })
}

/// The rule in JSON file `file`.
fn rule_of_file(file: &std::path::Path) -> anyhow::Result<Rule> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a notification rule (JSON, as /api/v1/notifications takes it)",
            file.display()
        )
    })
}

/// Comma-separated strings of JSON array `v`.
fn joined(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// What a rule sends where, for people: `failed,dead_lettered of orders to webhook <url>
/// signed with secret alerts`.
fn summary(rule: &Value) -> String {
    let target = &rule["target"];
    let signed = match target["secret"].as_str() {
        Some(secret) => format!("signed with secret {secret}"),
        None => "unsigned".to_string(),
    };
    format!(
        "sends {} of {} to {} {} {signed}",
        joined(&rule["on"]),
        joined(&rule["handlers"]),
        target["kind"].as_str().unwrap_or("?"),
        target["url"].as_str().unwrap_or("?"),
    )
}

/// The rules of `GET /api/v1/notifications` (`{"notifications": [{"rule", "revision"}],
/// "invalid"}`) as a table.
fn table(v: &Value) -> View {
    let mut table = Table::new(&[
        "name",
        "handlers",
        "on",
        "target",
        "url",
        "secret",
        "max attempts",
        "enabled",
    ]);
    for stored in v["notifications"].as_array().into_iter().flatten() {
        let rule = &stored["rule"];
        let target = &rule["target"];
        table.push(vec![
            cell(&rule["name"]),
            joined(&rule["handlers"]),
            joined(&rule["on"]),
            cell(&target["kind"]),
            cell(&target["url"]),
            cell(&target["secret"]),
            rule["max_attempts"].as_u64().unwrap_or(5).to_string(),
            yes_no(&rule["enabled"], true),
        ]);
    }
    View::table(&table, "notification rules")
        .with_notes(output::invalid_notes(v, "notification rule"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::*;

    /// `ferrisfx notification <args>` parsed.
    fn parse(args: &[&str]) -> Result<NotificationCommand, clap::Error> {
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            command: NotificationCommand,
        }
        let argv = std::iter::once("notification").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.command)
    }

    fn created(args: &[&str]) -> anyhow::Result<Rule> {
        let mut argv = vec!["create"];
        argv.extend_from_slice(args);
        match parse(&argv)? {
            NotificationCommand::Create(args) => rule_of(&args),
            other => panic!("not a create: {other:?}"),
        }
    }

    /// What the API receives for `ferrisfx notification create <args>`.
    fn body(args: &[&str]) -> Value {
        let rule = created(args).unwrap();
        rule.validate().unwrap();
        serde_json::to_value(&rule).unwrap()
    }

    #[test]
    fn flags_make_a_signed_webhook_rule() {
        assert_eq!(
            body(&[
                "oncall",
                "--handler",
                "orders",
                "--handler",
                "billing",
                "--on",
                "failed",
                "--on",
                "dead_lettered",
                "--url",
                "https://alerts.example.com/fx",
                "--secret",
                "alerts",
                "--max-attempts",
                "3",
                "--description",
                "page someone",
            ]),
            json!({
                "name": "oncall",
                "description": "page someone",
                "handlers": ["orders", "billing"],
                "on": ["failed", "dead_lettered"],
                "target": {"kind": "webhook", "url": "https://alerts.example.com/fx", "secret": "alerts"},
                "max_attempts": 3,
            })
        );
    }

    #[test]
    fn defaults_watch_every_handlers_failures_and_cloudevent_picks_the_sink() {
        assert_eq!(
            body(&["all", "--url", "http://127.0.0.1:9000/hook"]),
            json!({
                "name": "all",
                "handlers": ["*"],
                "on": ["failed"],
                "target": {"kind": "webhook", "url": "http://127.0.0.1:9000/hook"},
                "max_attempts": 5,
            })
        );
        assert_eq!(
            body(&[
                "audit",
                "--on",
                "succeeded",
                "--on",
                "dead-lettered",
                "--cloudevent",
                "--url",
                "http://broker.knative.local/default",
            ]),
            json!({
                "name": "audit",
                "handlers": ["*"],
                "on": ["succeeded", "dead_lettered"],
                "target": {"kind": "cloudevent", "url": "http://broker.knative.local/default"},
                "max_attempts": 5,
            })
        );
    }

    #[test]
    fn contradictory_or_missing_flags_are_refused() {
        let e = created(&[
            "x",
            "--handler",
            "*",
            "--handler",
            "orders",
            "--url",
            "http://a.b/",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("give it alone"), "{e}");
        // Clap's own checks: --url is required, the outcomes are listed, --file stands alone.
        assert!(parse(&["create", "x"]).is_err());
        assert!(parse(&["create", "x", "--url", "http://a.b/", "--on", "exploded"]).is_err());
        assert!(parse(&["create", "x", "--file", "rule.json"]).is_err());
        assert!(parse(&["create", "--file", "rule.json", "--cloudevent"]).is_err());
        assert!(parse(&["create", "--file", "rule.json"]).is_ok());
        // The model's checks stay the server's; the flags carry what was given.
        let zero = created(&["x", "--url", "http://a.b/", "--max-attempts", "0"]).unwrap();
        assert!(zero.validate().is_err());
    }

    #[test]
    fn a_file_holds_the_whole_rule() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rule.json");
        std::fs::write(
            &file,
            r#"{"name": "quiet", "handlers": ["orders"], "on": ["failed"], "target": {"kind": "webhook", "url": "https://a.example.com/"}, "enabled": false}"#,
        )
        .unwrap();
        let rule = rule_of_file(&file).unwrap();
        assert_eq!(rule.name, "quiet");
        assert!(!rule.enabled);
        assert_eq!(rule.max_attempts, 5);
        std::fs::write(&file, r#"{"name": "quiet", "on": ["failed"]}"#).unwrap();
        let e = format!("{:#}", rule_of_file(&file).unwrap_err());
        assert!(e.contains("is not a notification rule"), "{e}");
    }

    /// `GET /api/v1/notifications` as the API answers it.
    fn listing() -> Value {
        json!({
            "revision": 9,
            "notifications": [
                {"rule": {
                    "name": "oncall",
                    "handlers": ["orders", "billing"],
                    "on": ["failed", "dead_lettered"],
                    "target": {"kind": "webhook", "url": "https://a.example.com/", "secret": "alerts"},
                    "max_attempts": 3,
                 }, "revision": 8},
                {"rule": {
                    "name": "audit",
                    "handlers": ["*"],
                    "on": ["succeeded"],
                    "target": {"kind": "cloudevent", "url": "http://sink/"},
                    "max_attempts": 5,
                    "enabled": false,
                 }, "revision": 9},
            ],
            "invalid": [],
        })
    }

    #[test]
    fn the_list_is_a_table_and_summaries_read_well() {
        let view = table(&listing());
        assert_eq!(
            crate::output::testing::lines(&view),
            [
                "NAME    HANDLERS        ON                    TARGET      URL                     SECRET  MAX ATTEMPTS  ENABLED",
                "oncall  orders,billing  failed,dead_lettered  webhook     https://a.example.com/  alerts  3             yes",
                "audit   *               succeeded             cloudevent  http://sink/            -       5             no",
            ]
        );
        assert!(view.notes.is_empty(), "{view:?}");
        let empty = table(&json!({"notifications": [], "invalid": []}));
        assert_eq!(empty.notes, ["no notification rules"]);
        crate::output::testing::assert_documents(&listing(), &table);
        assert_eq!(
            summary(&listing()["notifications"][0]["rule"]),
            "sends failed,dead_lettered of orders,billing to webhook https://a.example.com/ signed with secret alerts"
        );
    }

    /// Runs `ferrisfx notification <args>` against `api`; what it printed.
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
            .put(format!("{base}/api/v1/secrets/alerts"))
            .json(&json!({"value": "shared with the receiver"}))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{answer:?}");

        assert_eq!(
            cli(&api, &["list"]).await.unwrap(),
            "",
            "the note goes to stderr"
        );
        let out = cli(
            &api,
            &[
                "create",
                "oncall",
                "--handler",
                "orders",
                "--on",
                "failed",
                "--on",
                "dead_lettered",
                "--url",
                "https://alerts.example.com/fx",
                "--secret",
                "alerts",
                "--max-attempts",
                "3",
            ],
        )
        .await
        .unwrap();
        assert!(
            out.starts_with("created notification rule oncall (revision "),
            "{out}"
        );
        assert!(
            out.ends_with(")\n  sends failed,dead_lettered of orders to webhook https://alerts.example.com/fx signed with secret alerts\n"),
            "{out}"
        );
        // The server's refusals come back with its reason.
        let e = cli(
            &api,
            &["create", "oncall", "--url", "https://a.example.com/"],
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("409"), "{e}");
        let e = cli(
            &api,
            &[
                "create",
                "other",
                "--url",
                "https://a.example.com/",
                "--secret",
                "nope",
            ],
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = cli(&api, &["create", "other", "--url", "ftp://a.example.com/"])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("400"), "{e}");
        let file = dir.path().join("rule.json");
        std::fs::write(
            &file,
            r#"{"name": "audit", "handlers": ["*"], "on": ["succeeded"], "target": {"kind": "cloudevent", "url": "http://sink.local/"}, "enabled": false}"#,
        )
        .unwrap();
        let out = cli(&api, &["create", "--file", file.to_str().unwrap()])
            .await
            .unwrap();
        assert!(
            out.contains("sends succeeded of * to cloudevent http://sink.local/ unsigned"),
            "{out}"
        );

        assert_eq!(
            cli(&api, &["list"]).await.unwrap(),
            "NAME    HANDLERS  ON                    TARGET      URL                            SECRET  MAX ATTEMPTS  ENABLED\n\
             audit   *         succeeded             cloudevent  http://sink.local/             -       5             no\n\
             oncall  orders    failed,dead_lettered  webhook     https://alerts.example.com/fx  alerts  3             yes\n"
        );
        let listed: Value =
            serde_yaml_ng::from_str(&cli(&api, &["list", "-o", "yaml"]).await.unwrap()).unwrap();
        assert_eq!(
            listed["notifications"][1]["rule"]["name"], "oncall",
            "{listed:?}"
        );
        let shown: Value =
            serde_json::from_str(&cli(&api, &["show", "oncall"]).await.unwrap()).unwrap();
        assert_eq!(shown["rule"]["target"]["secret"], "alerts", "{shown}");
        assert!(shown["revision"].as_u64().is_some(), "{shown}");

        assert_eq!(
            cli(&api, &["delete", "oncall"]).await.unwrap(),
            "deleted notification rule oncall\n"
        );
        let e = cli(&api, &["show", "oncall"]).await.unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
        let e = cli(&api, &["delete", "../secrets/alerts"])
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("404"),
            "a name is one path segment: {e}"
        );
        cli(&api, &["delete", "audit"]).await.unwrap();
        assert_eq!(cli(&api, &["list"]).await.unwrap(), "");
        platform.stop().await.unwrap();
    }
}
