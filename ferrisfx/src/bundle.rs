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
    /// List the bundles: name, commands, allow-list size and the path Slack posts to.
    List,
    /// Show one bundle (JSON) with its URL.
    Show {
        /// Bundle name.
        name: String,
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
        BundleCommand::List => {
            let v = api.send(api.http().get(api.url("/bundles"))).await?;
            let list = v["bundles"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                writeln!(out, "no bundles")?;
            }
            for b in &list {
                writeln!(out, "{}", line(b))?;
            }
            crate::client::write_invalid(out, &v)?;
        }
        BundleCommand::Show { name } => {
            let mut v = api.send(api.http().get(one(api, &name)?)).await?;
            let url = url_of(api, &v);
            if let Some(object) = v.as_object_mut() {
                object.insert("url".into(), url.into());
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
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

/// The URL Slack posts to: the server's base URL and the path the API answered.
fn url_of(api: &Api, v: &Value) -> String {
    let api_root = api.url("");
    let base = api_root.strip_suffix("/api/v1").unwrap_or(&api_root);
    format!("{base}{}", path_of(v))
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

/// One line of `bundle list`: name, commands, allow count, path.
fn line(b: &Value) -> String {
    let bundle = &b["bundle"];
    let commands: Vec<&str> = bundle["commands"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let commands = if commands.is_empty() {
        "no commands".to_string()
    } else {
        format!("commands {}", commands.join(","))
    };
    let allow = bundle["allow"].as_array().map_or(0, Vec::len);
    let allow = match allow {
        1 => "allow 1 user".to_string(),
        n => format!("allow {n} users"),
    };
    format!(
        "{}  {commands}  {allow}  {}",
        bundle["name"].as_str().unwrap_or("?"),
        path_of(b)
    )
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

    #[test]
    fn list_lines_name_commands_allow_and_path() {
        let listed = json!({
            "bundle": {
                "name": "ops",
                "slack": {"signing_secret": "slack-signing"},
                "allow": ["U1", "U2"],
                "commands": [
                    {"name": "deploy", "handler": "deployer", "syntax": "<service>"},
                    {"name": "status", "handler": "status"},
                ],
            },
            "revision": 3,
            "path": "/chat/slack/ops",
        });
        assert_eq!(
            line(&listed),
            "ops  commands deploy,status  allow 2 users  /chat/slack/ops"
        );
        let bare = json!({"bundle": {"name": "x", "allow": ["*"], "commands": []}});
        assert_eq!(line(&bare), "x  no commands  allow 1 user  /chat/slack/x");
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

        assert_eq!(cli(&api, &["list"]).await.unwrap(), "no bundles\n");
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
            "ops  commands greet  allow 1 user  /chat/slack/ops\n"
        );
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
        assert_eq!(cli(&api, &["list"]).await.unwrap(), "no bundles\n");
        platform.stop().await.unwrap();
    }
}
