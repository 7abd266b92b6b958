//! `ferrisfx secret …` as a user runs it: the built binary against a platform (`ferrisfx dev`'s
//! [`Platform`], authentication on, a keyring file of its own) started in this
//! process. A value goes in through standard input or a file and shows in no command's output;
//! a function granted the secret reads it.

// Test helpers fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferrisfx::dev::Platform;
use ferrisfx::settings::Settings;
use fx_core::secrets::{Keyring, Vault};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A value that must never show in any output.
const CANARY: &str = "canary-5f0c1e-never-printed";

/// The id of the server's only key.
const KEY_ID: &str = "cli1";

/// A platform running in this process, and what the CLI needs to talk to it.
struct Server {
    platform: Platform,
    shutdown: CancellationToken,
    url: String,
    token: String,
    data_dir: PathBuf,
    /// The server's keyring.
    key_file: PathBuf,
    /// The CLI's config directory (no kept tokens: the token comes from FX_TOKEN).
    config: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        management_server::metrics::install();
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        // A keyring file of its own: an FX_SECRETS_KEY in the test's environment plays no part.
        let key_file = dir.path().join("secrets.key");
        std::fs::write(&key_file, Keyring::generate_line(KEY_ID).unwrap()).unwrap();
        let mut settings = Settings {
            data_dir: data_dir.clone(),
            example: false,
            ..Settings::default()
        };
        settings.server.secrets.key_file = Some(key_file.clone());
        assert!(settings.server.auth.enabled, "the CLI sends its token");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let platform = Platform::start(settings, listener, shutdown.clone())
            .await
            .expect("platform starts");
        Server {
            url: format!("http://{}", platform.addr),
            token: platform.admin_token.clone().expect("a local admin token"),
            platform,
            shutdown,
            data_dir,
            key_file,
            config: tempfile::tempdir().unwrap(),
            _dir: dir,
        }
    }

    /// Runs `ferrisfx ARGS` against this server with `stdin` piped in.
    async fn cli(&self, args: &[&str], stdin: &str) -> Output {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (url, token, config) = (
            self.url.clone(),
            self.token.clone(),
            self.config.path().to_path_buf(),
        );
        let stdin = stdin.to_string();
        tokio::task::spawn_blocking(move || {
            ferrisfx(&args, &stdin, |c| {
                c.env("FX_SERVER", url)
                    .env("FX_TOKEN", token)
                    .env("FX_CONFIG_DIR", config);
            })
        })
        .await
        .unwrap()
    }

    /// The values the vault delivers to pool `default`, opened with the server's keyring.
    async fn delivered(&self) -> Vec<(String, String)> {
        let keyring = Keyring::from_file(&self.key_file).unwrap();
        let vault = Vault::new(self.platform.backends.secrets.clone(), Some(keyring));
        let values = vault.values_for("default").await.unwrap();
        values
            .into_iter()
            .map(|(name, value)| (name, value.expose().to_string()))
            .collect()
    }

    /// `GET /api/v1{path}` with the admin's token.
    async fn get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.platform.wait().await.expect("platform stops cleanly");
    }
}

/// Runs the built `ferrisfx` with `args`, `stdin` piped in, and no FX_* variable but those
/// `env` sets.
fn ferrisfx(args: &[String], stdin: &str, env: impl FnOnce(&mut Command)) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferrisfx"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FX_") {
            command.env_remove(key);
        }
    }
    env(&mut command);
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferrisfx runs");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        // A command that refuses early may have exited: a closed pipe is no failure here.
        let _ = input.write_all(stdin.as_bytes());
    }
    child.wait_with_output().unwrap()
}

/// Standard output and standard error together.
fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts the command succeeded and printed no secret value; its standard output.
fn ok(output: &Output) -> String {
    assert!(output.status.success(), "{}", text(output));
    assert!(!text(output).contains(CANARY), "{}", text(output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts the command failed without printing a secret value; both outputs.
fn failed(output: &Output) -> String {
    assert!(!output.status.success(), "{}", text(output));
    assert!(!text(output).contains(CANARY), "{}", text(output));
    text(output)
}

/// The line of `name` in `secret list`'s table, split in columns.
fn row(list: &str, name: &str) -> Option<Vec<String>> {
    list.lines()
        .map(|line| {
            line.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .find(|columns| columns.first().map(String::as_str) == Some(name))
}

#[test]
fn keygen_prints_a_keyring_line_offline() {
    let keygen = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        // No server: the address answers nothing.
        ferrisfx(&args, "", |c| {
            c.env("FX_SERVER", "http://127.0.0.1:9");
        })
    };
    let output = keygen(&["secret", "keygen"]);
    assert!(output.status.success(), "{}", text(&output));
    let line = String::from_utf8(output.stdout.clone()).unwrap();
    let keyring = Keyring::parse(&line).unwrap();
    assert_eq!(keyring.ids(), [ferrisfx::secret::default_key_id().as_str()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("server.secrets.key_file") && stderr.contains("FX_SECRETS_KEY"),
        "{stderr}"
    );
    assert!(!stderr.contains(line.trim()), "the key is printed once");

    let output = keygen(&["secret", "keygen", "--id", "rotated-2"]);
    let named = String::from_utf8(output.stdout).unwrap();
    assert!(named.starts_with("rotated-2:"), "{named}");
    assert_eq!(named.trim().len(), "rotated-2:".len() + 64);
    let both = Keyring::parse(&format!("{named}{line}")).unwrap();
    assert_eq!(both.primary(), "rotated-2");
    let hex = |l: &str| l.trim().split_once(':').unwrap().1.to_string();
    assert_ne!(hex(&named), hex(&line), "keys are random");

    let output = keygen(&["secret", "keygen", "--id", "no spaces"]);
    assert!(!output.status.success());
    assert!(text(&output).contains("key id"), "{}", text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_set_listed_and_deleted_and_their_values_never_printed() {
    let fx = Server::start().await;
    // An empty list prints nothing on standard output; the messages for people go to stderr.
    let output = fx.cli(&["secret", "list"], "").await;
    assert!(ok(&output).is_empty(), "{}", text(&output));
    let notes = String::from_utf8_lossy(&output.stderr);
    assert!(notes.starts_with("no secrets\n"), "{notes}");
    assert!(notes.contains("keyring: cli1 (seals)"), "{notes}");

    // From standard input, as `echo value | ferrisfx secret set NAME`: one newline dropped.
    let set = fx
        .cli(&["secret", "set", "db-password"], &format!("{CANARY}\n"))
        .await;
    let set = ok(&set);
    assert_eq!(
        set.trim(),
        "created secret db-password (version 1, pools default, key cli1)"
    );
    let list = ok(&fx.cli(&["secret", "list"], "").await);
    assert_eq!(
        row(&list, "db-password").unwrap()[..4],
        ["db-password", "1", "default", KEY_ID],
        "{list}"
    );
    assert!(list.contains("user:admin"), "{list}");
    assert_eq!(
        fx.delivered().await,
        [("db-password".to_string(), CANARY.to_string())]
    );

    // Again: version 2, with the pools given.
    let set = fx
        .cli(
            &[
                "secret",
                "set",
                "db-password",
                "--pool",
                "default",
                "--pool",
                "gpu",
            ],
            &format!("{CANARY}-2\n"),
        )
        .await;
    assert_eq!(
        ok(&set).trim(),
        "updated secret db-password (version 2, pools default,gpu, key cli1)"
    );
    let list = ok(&fx.cli(&["secret", "list"], "").await);
    assert_eq!(
        row(&list, "db-password").unwrap()[..3],
        ["db-password", "2", "default,gpu"],
        "{list}"
    );

    // From a file: its bytes exactly, final newlines included.
    let file = fx.data_dir.join("cert.pem");
    std::fs::write(&file, format!("{CANARY}\nsecond line\n")).unwrap();
    let set = fx
        .cli(
            &[
                "secret",
                "set",
                "tls-cert",
                "--from-file",
                file.to_str().unwrap(),
            ],
            "",
        )
        .await;
    assert!(ok(&set).starts_with("created secret tls-cert (version 1"));
    let delivered = fx.delivered().await;
    let cert = delivered
        .iter()
        .find(|(name, _)| name == "tls-cert")
        .unwrap();
    assert_eq!(cert.1, format!("{CANARY}\nsecond line\n"));

    // Delete, then again: the second fails and says why.
    let delete = ok(&fx.cli(&["secret", "delete", "tls-cert"], "").await);
    assert_eq!(delete.trim(), "deleted secret tls-cert");
    let again = failed(&fx.cli(&["secret", "delete", "tls-cert"], "").await);
    assert!(
        again.contains("404") && again.contains("secret tls-cert does not exist"),
        "{again}"
    );
    let list = ok(&fx.cli(&["secret", "list"], "").await);
    assert!(row(&list, "tls-cert").is_none(), "{list}");

    let rekey = ok(&fx.cli(&["secret", "rekey"], "").await);
    assert!(rekey.contains("with key cli1"), "{rekey}");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_comes_only_from_standard_input_or_a_file() {
    let fx = Server::start().await;
    // On the command line: refused without repeating it, and nothing is stored.
    for args in [
        vec!["secret", "set", "api-key", CANARY],
        vec!["secret", "set", "api-key", "--pool", "default", CANARY],
    ] {
        let refused = failed(&fx.cli(&args, "").await);
        assert!(refused.contains("standard input"), "{refused}");
    }
    // Nothing on standard input, an empty file, a file that is not UTF-8, a bad name.
    let empty = failed(&fx.cli(&["secret", "set", "api-key"], "\n").await);
    assert!(empty.contains("standard input held no value"), "{empty}");
    let file = fx.data_dir.join("empty");
    std::fs::write(&file, "").unwrap();
    let path = file.to_str().unwrap();
    let empty = failed(
        &fx.cli(&["secret", "set", "api-key", "--from-file", path], "")
            .await,
    );
    assert!(empty.contains("is empty"), "{empty}");
    std::fs::write(&file, [0xff, 0xfe, b'x']).unwrap();
    let binary = failed(
        &fx.cli(&["secret", "set", "api-key", "--from-file", path], "")
            .await,
    );
    assert!(binary.contains("not UTF-8"), "{binary}");
    let missing = failed(
        &fx.cli(
            &["secret", "set", "api-key", "--from-file", "/no/such/file"],
            "",
        )
        .await,
    );
    assert!(missing.contains("/no/such/file"), "{missing}");
    let name = failed(&fx.cli(&["secret", "set", "../etc"], CANARY).await);
    assert!(name.contains("secret name"), "{name}");
    // A pool the server refuses: its message, as for every command.
    let pool = failed(
        &fx.cli(
            &["secret", "set", "api-key", "--pool", "Not A Pool"],
            CANARY,
        )
        .await,
    );
    assert!(pool.contains("server answered 400"), "{pool}");
    assert!(fx.delivered().await.is_empty());
    let output = fx.cli(&["secret", "list"], "").await;
    assert!(ok(&output).is_empty(), "{}", text(&output));
    assert!(text(&output).starts_with("no secrets"), "{}", text(&output));
    fx.stop().await;
}

/// The `misbehave` example, packaged by `infra/scripts/build-examples.sh`; `None` (the test
/// says it skipped) when it was not built, a failure under `CI=true`.
fn misbehave_package() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dist/misbehave.fxpkg");
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} is missing, and CI=true forbids skipping: run infra/scripts/build-examples.sh (the test command does)",
            path.display()
        );
    }
    eprintln!(
        "skipped: {} is missing (infra/scripts/build-examples.sh builds it)",
        path.display()
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_reads_a_secret_set_with_the_cli() {
    let Some(package) = misbehave_package() else {
        return;
    };
    let fx = Server::start().await;
    ok(&fx
        .cli(&["package", "upload", package.to_str().unwrap()], "")
        .await);
    ok(&fx
        .cli(
            &[
                "handler",
                "create",
                "--name",
                "reader",
                "--package",
                "misbehave",
                "--type",
                "fx.test.grants",
                "--secret",
                "test-token",
            ],
            "",
        )
        .await);
    let set = fx
        .cli(&["secret", "set", "test-token"], "tok-from-the-cli\n")
        .await;
    assert!(ok(&set).starts_with("created secret test-token"));
    let revision = fx.get("/handlers/reader").await["revision"]
        .as_u64()
        .unwrap();
    assert!(
        fx.platform
            .gateway_sees(revision, Duration::from_secs(30))
            .await
    );

    let accepted = reqwest::Client::new()
        .post(format!("{}/events", fx.url))
        .bearer_auth(&fx.token)
        .header("ce-specversion", "1.0")
        .header("ce-id", "read-1")
        .header("ce-source", "/tests")
        .header("ce-type", "fx.test.grants")
        .header("content-type", "text/plain")
        .body("test-token")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        let listed = fx.get("/executions?handler=reader").await;
        let finished = listed["items"].as_array().and_then(|items| {
            items
                .iter()
                .find(|e| matches!(e["status"].as_str(), Some("succeeded" | "failed")))
                .map(|e| e["id"].as_str().unwrap().to_string())
        });
        if let Some(id) = finished {
            break id;
        }
        assert!(Instant::now() < deadline, "no execution finished: {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let detail = fx.get(&format!("/executions/{id}")).await;
    assert_eq!(detail["execution"]["status"], "succeeded", "{detail:#}");
    let output = detail["execution"]["output"][0]["data"].as_str().unwrap();
    assert!(
        output
            .lines()
            .any(|line| line == "secret test-token: ok tok-from-the-cli"),
        "{output}"
    );
    fx.stop().await;
}
