//! `ferrisfx bundle`: create, list, show and delete chat command bundles on the management
//! server. A bundle is a Slack app's commands: Slack posts them to
//! `<server>/chat/slack/<name>`, the signature is checked with a platform secret, and each
//! command runs its handler on a `com.ferrisfx.chat.command` event. Commands are structured,
//! so `create` takes the whole bundle as JSON (`--file`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use fx_core::chat::Bundle;
use serde_json::Value;

use crate::client::Api;
use crate::output::{self, cell, Format, ListArgs, ShowArgs, Table, View};

/// Chat command bundle commands.
#[derive(Debug, clap::Subcommand)]
pub enum BundleCommand {
    /// Create a bundle from a JSON file (as `POST /api/v1/bundles` takes it); prints the URL
    /// the Slack app must post to.
    Create {
        /// The whole bundle, JSON: name, slack {signing_secret, bot_token…}, allow, commands.
        #[arg(long)]
        file: PathBuf,
    },
    /// List the bundles: name, commands, allow-list size and the URL Slack posts to.
    List(ListArgs),
    /// Show one bundle with its URL (JSON by default; `-o table` for its row of the list).
    Show {
        /// Bundle name.
        name: String,
        /// Output format.
        #[command(flatten)]
        output: ShowArgs,
    },
    /// Delete a bundle: its URL answers 404 from then on.
    Delete {
        /// Bundle name.
        name: String,
    },
}

/// Runs a bundle command against `api`, printing to standard output.
pub async fn run(api: &Api, command: BundleCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    execute(api, command, &mut out).await
}

/// Runs a bundle command against `api`, writing what it says to `out`.
pub async fn execute(api: &Api, command: BundleCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        BundleCommand::Create { file } => {
            let bundle = bundle_of_file(&file)?;
            let v = api
                .send(api.http().post(api.url("/bundles")).json(&bundle))
                .await?;
            writeln!(
                out,
                "created bundle {} (revision {})",
                bundle.name,
                v["revision"].as_u64().unwrap_or_default()
            )?;
            writeln!(out, "  Slack posts to: {}", url_of(api, &v))?;
            for c in &bundle.commands {
                writeln!(out, "  {}", command_line(&c.name, &c.syntax, &c.handler))?;
            }
        }
        BundleCommand::List(args) => {
            let base = base_of(api);
            output::list(
                &args,
                "ferrisfx bundle list",
                || api.send(api.http().get(api.url("/bundles"))),
                &|v| table(&base, v),
                out,
            )
            .await?;
        }
        BundleCommand::Show { name, output } => {
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
                &|v| table(&base, &serde_json::json!({ "bundles": [v] })),
                out,
            )
            .await?;
        }
        BundleCommand::Delete { name } => {
            api.send(api.http().delete(one(api, &name)?)).await?;
            writeln!(out, "deleted bundle {name}")?;
        }
    }
    Ok(())
}

/// The API URL of bundle `name`, the name escaped as a path segment.
fn one(api: &Api, name: &str) -> anyhow::Result<reqwest::Url> {
    api.entry_url("/bundles", name)
}

/// The server's base URL, that chat paths follow.
fn base_of(api: &Api) -> String {
    let api_root = api.url("");
    api_root
        .strip_suffix("/api/v1")
        .unwrap_or(&api_root)
        .to_string()
}

/// The URL Slack posts to: the server's base URL and the path the API answered.
fn url_of(api: &Api, v: &Value) -> String {
    format!("{}{}", base_of(api), path_of(v))
}

/// The path Slack posts to, as the API answered it (else made from the name).
fn path_of(v: &Value) -> String {
    v["path"].as_str().map_or_else(
        || {
            format!(
                "/chat/slack/{}",
                v["bundle"]["name"].as_str().unwrap_or("?")
            )
        },
        str::to_string,
    )
}

/// The bundle in JSON file `file`.
fn bundle_of_file(file: &Path) -> anyhow::Result<Bundle> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a command bundle (JSON, as /api/v1/bundles takes it)",
            file.display()
        )
    })
}

/// `name syntax → handler`.
fn command_line(name: &str, syntax: &str, handler: &str) -> String {
    if syntax.is_empty() {
        format!("{name} → {handler}")
    } else {
        format!("{name} {syntax} → {handler}")
    }
}

/// The bundles of `GET /api/v1/bundles` (`{"bundles": [{"bundle", "revision", "path"}],
/// "invalid"}`) as a table, URLs on the server at `base`.
fn table(base: &str, v: &Value) -> View {
    let mut table = Table::new(&["name", "commands", "allow", "revision", "url"]);
    for b in v["bundles"].as_array().into_iter().flatten() {
        let bundle = &b["bundle"];
        let commands: Vec<&str> = bundle["commands"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        let allow = bundle["allow"].as_array().map_or(&[][..], Vec::as_slice);
        let allow = match allow.len() {
            _ if allow.iter().any(|a| a == "*") => "everyone".to_string(),
            1 => "1 entry".to_string(),
            n => format!("{n} entries"),
        };
        table.push(vec![
            cell(&bundle["name"]),
            if commands.is_empty() {
                "-".into()
            } else {
                commands.join(",")
            },
            allow,
            cell(&b["revision"]),
            format!("{base}{}", path_of(b)),
        ]);
    }
    View::table(&table, "bundles").with_notes(output::invalid_notes(v, "bundle"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::*;

    /// `ferrisfx bundle <args>` parsed.
    fn parse(args: &[&str]) -> Result<BundleCommand, clap::Error> {
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            command: BundleCommand,
        }
        let argv = std::iter::once("bundle").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.command)
    }

    #[test]
    fn create_takes_a_file() {
        assert!(parse(&["create"]).is_err(), "--file is required");
        assert!(
            parse(&["create", "ops"]).is_err(),
            "no flags for the fields"
        );
        assert!(matches!(
            parse(&["create", "--file", "ops.json"]).unwrap(),
            BundleCommand::Create { file } if file == Path::new("ops.json")
        ));
    }

    /// `GET /api/v1/bundles` as the API answers it.
    fn listing() -> Value {
        json!({
            "revision": 3,
            "bundles": [
                {"bundle": {
                    "name": "ops",
                    "slack": {"signing_secret": "slack-signing"},
                    "allow": ["U1", "U2"],
                    "commands": [
                        {"name": "deploy", "handler": "deployer", "syntax": "<service>"},
                        {"name": "status", "handler": "status"},
                    ],
                 }, "revision": 3, "path": "/chat/slack/ops"},
                {"bundle": {"name": "x", "allow": ["*"], "commands": []}, "revision": 1},
            ],
            "invalid": [{"name": "y", "reason": "no commands"}],
        })
    }

    #[test]
    fn the_list_is_a_table_and_the_documents_the_answer() {
        let view = table("http://fx", &listing());
        assert_eq!(
            crate::output::testing::lines(&view),
            [
                "NAME  COMMANDS       ALLOW      REVISION  URL",
                "ops   deploy,status  2 entries  3         http://fx/chat/slack/ops",
                "x     -              everyone   1         http://fx/chat/slack/x",
            ]
        );
        assert_eq!(view.notes, ["invalid bundle \"y\" (skipped): no commands"]);
        let empty = table("http://fx", &json!({"bundles": [], "invalid": []}));
        assert_eq!(empty.notes, ["no bundles"]);
        crate::output::testing::assert_documents(&listing(), &|v| table("http://fx", v));
        assert_eq!(
            command_line("deploy", "<service> [env]", "deployer"),
            "deploy <service> [env] → deployer"
        );
        assert_eq!(command_line("status", "", "status"), "status → status");
    }

    #[test]
    fn a_file_holds_the_whole_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bundle.json");
        let e = format!("{:#}", bundle_of_file(&file).unwrap_err());
        assert!(e.contains("reading") && e.contains("bundle.json"), "{e}");
        std::fs::write(
            &file,
            r#"{"name": "ops", "slack": {"signing_secret": "s"}, "allow": ["*"], "commands": [{"name": "greet", "handler": "greeter", "syntax": "[who]"}]}"#,
        )
        .unwrap();
        let bundle = bundle_of_file(&file).unwrap();
        assert_eq!(bundle.name, "ops");
        assert_eq!(bundle.commands[0].handler, "greeter");
        std::fs::write(&file, r#"{"name": "ops", "commands": []}"#).unwrap();
        let e = format!("{:#}", bundle_of_file(&file).unwrap_err());
        assert!(e.contains("is not a command bundle"), "{e}");
    }

    /// Runs `ferrisfx bundle <args>` against `api`; what it printed.
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
        let answer = reqwest::Client::new()
            .put(format!("{base}/api/v1/secrets/slack-signing"))
            .json(&json!({"value": "8f742231b10e8888abcd99yyyzzz85a5", "pools": ["default"]}))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{answer:?}");

        assert_eq!(
            cli(&api, &["list"]).await.unwrap(),
            "",
            "`no bundles` goes to stderr"
        );
        let file = dir.path().join("ops.json");
        std::fs::write(
            &file,
            r#"{"name": "ops", "slack": {"signing_secret": "slack-signing"}, "allow": ["U1"], "commands": [{"name": "greet", "handler": "greeter", "syntax": "[who]"}]}"#,
        )
        .unwrap();
        let out = cli(&api, &["create", "--file", file.to_str().unwrap()])
            .await
            .unwrap();
        assert!(out.starts_with("created bundle ops"), "{out}");
        assert!(
            out.contains(&format!("Slack posts to: {base}/chat/slack/ops\n")),
            "{out}"
        );
        assert!(out.contains("greet [who] → greeter"), "{out}");
        let e = cli(&api, &["create", "--file", file.to_str().unwrap()])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("409"), "{e}");

        assert_eq!(
            cli(&api, &["list"]).await.unwrap(),
            format!(
                "NAME  COMMANDS  ALLOW    REVISION  URL\n\
                 ops   greet     1 entry  1         {base}/chat/slack/ops\n"
            )
        );
        let listed: Value =
            serde_json::from_str(&cli(&api, &["list", "-o", "json"]).await.unwrap()).unwrap();
        assert_eq!(listed["bundles"][0]["bundle"]["name"], "ops", "{listed}");
        let shown: Value =
            serde_json::from_str(&cli(&api, &["show", "ops"]).await.unwrap()).unwrap();
        assert_eq!(shown["bundle"]["slack"]["signing_secret"], "slack-signing");
        assert_eq!(shown["url"], format!("{base}/chat/slack/ops"), "{shown}");

        assert_eq!(
            cli(&api, &["delete", "ops"]).await.unwrap(),
            "deleted bundle ops\n"
        );
        let e = cli(&api, &["show", "ops"]).await.unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
        assert_eq!(cli(&api, &["list"]).await.unwrap(), "");
        platform.stop().await.unwrap();
    }
}
