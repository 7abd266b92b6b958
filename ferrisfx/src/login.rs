//! The CLI's credentials: `ferrisfx login` keeps a token per server in the user's config
//! directory (`$FX_CONFIG_DIR`, else `$XDG_CONFIG_HOME/ferrisfx`, else `~/.config/ferrisfx`),
//! in `tokens.json`, readable by its owner only; `FX_TOKEN` (or `--token`) wins over it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The directory of the CLI's files.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FX_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("ferrisfx"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("ferrisfx")),
        None => bail!("no config directory: set FX_CONFIG_DIR, XDG_CONFIG_HOME or HOME"),
    }
}

fn tokens_file() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("tokens.json"))
}

/// The server URL as a key: without a trailing slash.
fn key(server: &str) -> String {
    server.trim_end_matches('/').to_string()
}

fn load_all(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a tokens file; delete it and log in again",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn save_all(path: &Path, tokens: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .context("the tokens file has no directory")?
        .to_path_buf();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = serde_json::to_vec_pretty(tokens)?;
    // Written to a file only its owner may read, then moved into place.
    let temporary = dir.join(".tokens.json.tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(&temporary)
            .with_context(|| format!("writing {}", temporary.display()))?;
        file.write_all(&text)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The token to send to `server`: `explicit` (`--token` / `FX_TOKEN`), else the one `ferrisfx
/// login` kept for it.
pub fn token_for(server: &str, explicit: Option<&str>) -> Option<String> {
    if let Some(token) = explicit.filter(|t| !t.is_empty()) {
        return Some(token.to_string());
    }
    load_all(&tokens_file().ok()?).ok()?.remove(&key(server))
}

/// Keeps `token` for `server`; the file it is kept in.
pub fn remember(server: &str, token: &str) -> anyhow::Result<PathBuf> {
    let path = tokens_file()?;
    remember_in(&path, server, token)?;
    Ok(path)
}

fn remember_in(path: &Path, server: &str, token: &str) -> anyhow::Result<()> {
    let mut tokens = load_all(path)?;
    tokens.insert(key(server), token.to_string());
    save_all(path, &tokens)
}

/// Forgets the token of `server`; the one that was kept, if any.
pub fn forget(server: &str) -> anyhow::Result<Option<String>> {
    forget_in(&tokens_file()?, server)
}

fn forget_in(path: &Path, server: &str) -> anyhow::Result<Option<String>> {
    let mut tokens = load_all(path)?;
    let token = tokens.remove(&key(server));
    save_all(path, &tokens)?;
    Ok(token)
}

/// The password for `ferrisfx login`: `FX_PASSWORD`, or the first line of standard input with
/// `--password-stdin`.
pub fn password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from standard input")?;
        let line = text.lines().next().unwrap_or_default().to_string();
        if line.is_empty() {
            bail!("standard input held no password");
        }
        return Ok(line);
    }
    match std::env::var("FX_PASSWORD") {
        Ok(password) if !password.is_empty() => Ok(password),
        _ => bail!(
            "give the password on standard input (`--password-stdin`, e.g. `ferrisfx login --user admin --password-stdin < password-file`) or in FX_PASSWORD"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_kept_per_server_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("tokens.json");
        let kept = |server: &str| load_all(&path).unwrap().remove(&key(server));
        assert_eq!(kept("http://a:8080"), None);
        remember_in(&path, "http://a:8080/", "fxt_one").unwrap();
        remember_in(&path, "http://b:8080", "fxt_two").unwrap();
        assert_eq!(kept("http://a:8080").as_deref(), Some("fxt_one"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            forget_in(&path, "http://a:8080").unwrap().as_deref(),
            Some("fxt_one")
        );
        assert_eq!(kept("http://a:8080"), None);
        assert_eq!(kept("http://b:8080").as_deref(), Some("fxt_two"));
        assert_eq!(
            token_for("http://b:8080", Some("fxt_explicit")).as_deref(),
            Some("fxt_explicit"),
            "an explicit token wins"
        );
        std::fs::write(&path, "garbage").unwrap();
        assert!(load_all(&path).is_err());
    }
}
