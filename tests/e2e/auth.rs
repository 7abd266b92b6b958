//! The CLI against a server that requires credentials: `ferrisfx login`, then the README's
//! five-minute path (upload, handler, emit, executions) with the token it kept; `logout`
//! revokes it.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferrisfx::settings::Settings;
use fx_tests::processes::ferrisfx_binary;
use fx_tests::{example_package, TestPlatform};

const PASSWORD: &str = "correct horse battery staple";

/// Runs the `ferrisfx` binary against `server` with its config in `config`. The wait is
/// `block_in_place`: the worker it blocks hands its tasks (the server answering the CLI among
/// them, perhaps) to another thread first.
fn cli(server: &str, config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    tokio::task::block_in_place(|| cli_blocking(server, config, args, stdin))
}

fn cli_blocking(server: &str, config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(ferrisfx_binary());
    command
        .args(args)
        .env("FX_SERVER", server)
        .env("FX_CONFIG_DIR", config)
        .env_remove("FX_TOKEN")
        .env_remove("FX_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("ferrisfx runs");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signs_in_and_the_five_minute_path_works_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        data_dir: dir.path().to_path_buf(),
        example: false,
        ..fx_tests::open_settings()
    };
    settings.server.auth.enabled = true;
    settings.server.auth.bootstrap_password = Some(PASSWORD.into());
    let fx = TestPlatform::start_with(settings).await;
    let server = fx.base.clone();
    let config = tempfile::tempdir().unwrap();
    let package = dir.path().join("hello.fxpkg");
    std::fs::write(&package, example_package("hello")).unwrap();
    let package = package.to_str().unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        let (server, config) = (server.clone(), config.path().to_path_buf());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let stdin = stdin.map(str::to_string);
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                cli(&server, &config, &args, stdin.as_deref())
            })
            .await
            .unwrap()
        }
    };

    // Without a token the server refuses, and the CLI says how to sign in.
    let refused = run(&["package", "upload", package], None).await;
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("ferrisfx login"),
        "{}",
        text(&refused)
    );
    let wrong = run(
        &["login", "--user", "admin", "--password-stdin"],
        Some("not the password\n"),
    )
    .await;
    assert!(!wrong.status.success());
    assert!(
        text(&wrong).contains("wrong account name or password"),
        "{}",
        text(&wrong)
    );

    let login = run(
        &["login", "--user", "admin", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    )
    .await;
    assert!(login.status.success(), "{}", text(&login));
    assert!(!text(&login).contains("fxt_"), "the token is not printed");
    let kept = std::fs::read_to_string(config.path().join("tokens.json")).unwrap();
    let token = serde_json::from_str::<serde_json::Value>(&kept).unwrap()[&server]
        .as_str()
        .unwrap()
        .to_string();
    let whoami = run(&["whoami"], None).await;
    assert!(text(&whoami).contains("user:admin"), "{}", text(&whoami));

    // The README's path.
    for args in [
        vec!["package", "upload", package],
        vec![
            "handler",
            "create",
            "--name",
            "hello",
            "--package",
            "hello",
            "--type",
            "com.example.hello",
        ],
        vec![
            "emit",
            "--type",
            "com.example.hello",
            "--id",
            "cli-1",
            "--data",
            "{\"name\": \"Ferris\"}",
        ],
    ] {
        let out = run(&args, None).await;
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = run(&["executions", "list", "--handler", "hello"], None).await;
        assert!(listed.status.success(), "{}", text(&listed));
        if text(&listed).contains("succeeded") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no succeeded execution: {}",
            text(&listed)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Logging out revokes the token on the server, not only on this machine.
    let logout = run(&["logout"], None).await;
    assert!(logout.status.success(), "{}", text(&logout));
    assert!(text(&logout).contains("revoked"), "{}", text(&logout));
    let status = reqwest::Client::new()
        .get(format!("{server}/api/v1/handlers"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let after = run(&["handler", "list"], None).await;
    assert!(!after.status.success());
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_with_authentication_makes_a_local_admin_and_installs_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let settings = || Settings {
        data_dir: dir.path().to_path_buf(),
        example: true,
        ..Settings::default()
    };
    assert!(settings().server.auth.enabled, "on by default");
    let fx = TestPlatform::start_with(settings()).await;
    let password_file = dir.path().join("admin-password");
    let password = std::fs::read_to_string(&password_file).unwrap();
    assert_eq!(password.len(), 24);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&password_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let token = fx.admin_token().expect("a local admin token");
    let http = reqwest::Client::new();
    let handlers = |token: Option<String>| {
        let (http, base) = (http.clone(), fx.base.clone());
        async move {
            let mut request = http.get(format!("{base}/api/v1/handlers"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.unwrap()
        }
    };
    assert_eq!(handlers(None).await.status(), 401);
    let listed: serde_json::Value = handlers(Some(token.clone())).await.json().await.unwrap();
    assert_eq!(
        listed["handlers"][0]["handler"]["name"], "hello",
        "the example was installed with the token: {listed}"
    );
    // The password file's password signs in.
    let signed = http
        .post(format!("{}/api/v1/login", fx.base))
        .json(&serde_json::json!({"name": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 201);
    fx.stop().await;

    // The next start keeps the password, makes a new token and revokes the old one.
    let again = TestPlatform::start_with(settings()).await;
    assert_eq!(std::fs::read_to_string(&password_file).unwrap(), password);
    let second = again.admin_token().unwrap();
    assert_ne!(second, token);
    let status = |token: String| {
        let (http, base) = (http.clone(), again.base.clone());
        async move {
            http.get(format!("{base}/api/v1/me"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status(second).await, 200);
    assert_eq!(status(token).await, 401);
    again.stop().await;
}
