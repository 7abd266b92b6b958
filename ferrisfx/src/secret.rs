//! `ferrisfx secret`: write, list, delete and re-seal platform secrets on the management server,
//! and make keyring keys offline.
//!
//! A value goes to the server and never comes back: it is read from standard input or a file,
//! never from the command line (where it would stay in the shell's history and show in `ps`),
//! and no command prints it.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use fx_core::secrets::{Keyring, SecretMeta, SecretValue};
use serde_json::Value;

use crate::client::Api;
use crate::output::{self, cell, time, ListArgs, Table, View};

/// Secret commands.
#[derive(Debug, clap::Subcommand)]
pub enum SecretCommand {
    /// Create a secret or give it a new value and pools; the value is read from standard input.
    ///
    /// The value is standard input, whole, less one trailing newline (so `echo value |
    /// ferrisfx secret set NAME` stores `value`), or the content of --from-file, exactly. It is
    /// never taken from the command line, where it would stay in the shell's history and show
    /// in `ps`, and never printed: the command prints the name, version, pools and key.
    Set(SetArgs),
    /// List the secrets (never their values) and the server's keys.
    List(ListArgs),
    /// Delete a secret.
    Delete {
        /// Secret name.
        name: String,
    },
    /// Re-seal every secret with the keyring's first key.
    ///
    /// To rotate keys: put a new key (`ferrisfx secret keygen`) first in the keyring, restart
    /// the servers, run this, and drop the old key once `secret list` shows no secret sealed
    /// with it.
    Rekey,
    /// Print a new random key as a keyring line, `<id>:<64 hex digits>` (offline).
    ///
    /// The line goes first in the server's keyring (`server.secrets.key_file`, whose first
    /// line seals, or the FX_SECRETS_KEY variable); no server is needed.
    Keygen {
        /// The key's id (1 to 32 letters, digits, '-', '_' or '.'); default `k` and today's
        /// date (UTC) as YYYYMMDD.
        #[arg(long)]
        id: Option<String>,
    },
}

/// Flags of `ferrisfx secret set`.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// Secret name, as handlers grant it and functions read it.
    pub name: String,
    /// A pool whose executors receive the secret, or `*` for every pool (repeat for more;
    /// default: the server's default, pool `default`). Replaces the pools it had.
    #[arg(long = "pool", value_name = "POOL")]
    pub pools: Vec<String>,
    /// Read the value from this file, exactly as it is (UTF-8), instead of standard input.
    #[arg(long, value_name = "PATH")]
    pub from_file: Option<PathBuf>,
    /// Catches a value given on the command line, to refuse it without repeating it.
    #[arg(hide = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub value_on_command_line: Vec<String>,
}

/// Runs a secret command.
pub async fn run(api: &Api, command: SecretCommand) -> anyhow::Result<()> {
    match command {
        SecretCommand::Set(args) => set(api, args).await,
        SecretCommand::List(args) => list(api, &args).await,
        SecretCommand::Delete { name } => delete(api, &name).await,
        SecretCommand::Rekey => rekey(api).await,
        SecretCommand::Keygen { id } => keygen(id),
    }
}

async fn set(api: &Api, args: SetArgs) -> anyhow::Result<()> {
    if !args.value_on_command_line.is_empty() {
        bail!(
            "`secret set` takes the value from standard input (`ferrisfx secret set {} < file`, or \
             piped) or from --from-file, never from the command line, where it would stay in the \
             shell's history",
            args.name
        );
    }
    fx_core::secrets::validate_secret_name(&args.name)?;
    let value = match &args.from_file {
        Some(path) => value_from_file(path)?,
        None => value_from_stdin()?,
    };
    let mut body = serde_json::json!({ "value": value.expose() });
    if !args.pools.is_empty() {
        body["pools"] = serde_json::json!(args.pools);
    }
    let answer = api
        .send(
            api.http()
                .put(api.url(&format!("/secrets/{}", args.name)))
                .json(&body),
        )
        .await?;
    let meta: SecretMeta = serde_json::from_value(answer).context("reading the server's answer")?;
    let done = if meta.version == 1 {
        "created"
    } else {
        "updated"
    };
    println!(
        "{done} secret {} (version {}, pools {}, key {})",
        meta.name,
        meta.version,
        meta.pools.join(","),
        meta.key_id
    );
    Ok(())
}

/// The whole of standard input, less one trailing newline (`\n` or `\r\n`).
fn value_from_stdin() -> anyhow::Result<SecretValue> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("reading the value from standard input; end it with Ctrl-D (a final newline is dropped)");
    }
    let mut bytes = Vec::new();
    stdin
        .read_to_end(&mut bytes)
        .context("reading the value from standard input")?;
    let mut text = String::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("the value on standard input is not UTF-8 text ({e})"))?;
    strip_one_newline(&mut text);
    if text.is_empty() {
        bail!(
            "standard input held no value: pipe it in (`printf %s \"$VALUE\" | ferrisfx secret set NAME`) or pass --from-file PATH"
        );
    }
    Ok(SecretValue::new(text)?)
}

/// The content of `path`, exactly.
fn value_from_file(path: &Path) -> anyhow::Result<SecretValue> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("{} is not UTF-8 text ({e})", path.display()))?;
    if text.is_empty() {
        bail!("{} is empty: a secret needs a value", path.display());
    }
    Ok(SecretValue::new(text)?)
}

/// Drops one final `\n` (with the `\r` before it, if any).
fn strip_one_newline(text: &mut String) {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
}

async fn list(api: &Api, args: &ListArgs) -> anyhow::Result<()> {
    output::list(
        args,
        "ferrisfx secret list",
        || api.send(api.http().get(api.url("/secrets"))),
        &table,
        &mut std::io::stdout().lock(),
    )
    .await
}

/// The secrets of `GET /api/v1/secrets` (`{"secrets": [SecretMeta], "keys"}`) as a table,
/// never a value; the keyring as a note.
fn table(v: &Value) -> View {
    let mut table = Table::new(&["name", "version", "pools", "key", "updated", "by"]);
    for s in v["secrets"].as_array().into_iter().flatten() {
        let pools: Vec<String> = s["pools"]
            .as_array()
            .into_iter()
            .flatten()
            .map(cell)
            .collect();
        table.push(vec![
            cell(&s["name"]),
            cell(&s["version"]),
            pools.join(","),
            cell(&s["key_id"]),
            time(&s["updated_at"]),
            cell(&s["updated_by"]),
        ]);
    }
    let keys: Vec<String> = v["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(cell)
        .collect();
    let keyring = match keys.split_first() {
        Some((sealing, [])) => format!("keyring: {sealing} (seals)"),
        Some((sealing, others)) => format!("keyring: {sealing} (seals), {}", others.join(", ")),
        None => "keyring: none (platform secrets are not configured on this server)".into(),
    };
    View::table(&table, "secrets").with_notes([keyring])
}

async fn delete(api: &Api, name: &str) -> anyhow::Result<()> {
    fx_core::secrets::validate_secret_name(name)?;
    api.send(api.http().delete(api.url(&format!("/secrets/{name}"))))
        .await?;
    println!("deleted secret {name}");
    Ok(())
}

async fn rekey(api: &Api) -> anyhow::Result<()> {
    let v = api.send(api.http().post(api.url("/secrets/rekey"))).await?;
    let resealed = v["resealed"].as_u64().unwrap_or(0);
    println!(
        "re-sealed {resealed} secret{} with key {}",
        if resealed == 1 { "" } else { "s" },
        v.get("key_id").and_then(Value::as_str).unwrap_or("?")
    );
    Ok(())
}

/// The id `keygen` gives a key by default: `k` and today's date (UTC), e.g. `k20250131`.
pub fn default_key_id() -> String {
    format!("k{}", chrono::Utc::now().format("%Y%m%d"))
}

fn keygen(id: Option<String>) -> anyhow::Result<()> {
    let id = id.unwrap_or_else(default_key_id);
    let line = Keyring::generate_line(&id)?;
    println!("{line}");
    eprintln!(
        "keep this line secret. It goes first in the server's keyring: the file named by \
         server.secrets.key_file (the first line seals, the lines below still open what they \
         sealed), or the FX_SECRETS_KEY variable. Restart the servers, then run `ferrisfx \
         secret rekey` and drop an old key once `ferrisfx secret list` shows no secret sealed \
         with it"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_dropped() {
        for (input, stored) in [
            ("value\n", "value"),
            ("value\r\n", "value"),
            ("value\n\n", "value\n"),
            ("value", "value"),
            ("two\nlines\n", "two\nlines"),
            ("\n", ""),
        ] {
            let mut text = input.to_string();
            strip_one_newline(&mut text);
            assert_eq!(text, stored, "{input:?}");
        }
    }

    #[test]
    fn the_list_is_a_table_and_the_documents_the_answer() {
        let at = chrono::DateTime::parse_from_rfc3339("2025-01-31T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let meta = |name: &str, version| SecretMeta {
            name: name.into(),
            pools: vec!["default".into(), "gpu".into()],
            version,
            key_id: "k20250131".into(),
            created_at: at,
            updated_at: at,
            updated_by: "user:admin".into(),
        };
        // `GET /api/v1/secrets` as the API answers it (`SecretList`).
        let listing = serde_json::json!({
            "secrets": [meta("db-password", 2), meta("api", 10)],
            "keys": ["k20250131", "k20240101"],
        });
        let view = table(&listing);
        assert_eq!(
            crate::output::testing::lines(&view),
            [
                "NAME         VERSION  POOLS        KEY        UPDATED               BY",
                "db-password  2        default,gpu  k20250131  2025-01-31 12:00:00Z  user:admin",
                "api          10       default,gpu  k20250131  2025-01-31 12:00:00Z  user:admin",
            ]
        );
        assert_eq!(view.notes, ["keyring: k20250131 (seals), k20240101"]);
        let empty = table(&serde_json::json!({"secrets": [], "keys": []}));
        assert_eq!(
            empty.notes,
            [
                "no secrets",
                "keyring: none (platform secrets are not configured on this server)"
            ]
        );
        crate::output::testing::assert_documents(&listing, &table);
    }

    #[test]
    fn the_default_key_id_is_a_valid_one_named_by_the_date() {
        let id = default_key_id();
        assert_eq!(id.len(), 9);
        assert!(id.starts_with('k') && id[1..].chars().all(|c| c.is_ascii_digit()));
        let line = Keyring::generate_line(&id).unwrap();
        assert_eq!(Keyring::parse(&line).unwrap().ids(), [id.as_str()]);
    }
}
