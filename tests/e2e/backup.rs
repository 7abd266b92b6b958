//! Backup and restore (issue 19): a `ferrisfx dev` platform filled with packages, handlers
//! (with history), an alias, a schedule, a workflow and its run, a secret and executions is
//! backed up with the `ferrisfx` CLI, restored with it into a platform on PostgreSQL, S3 and
//! Consul (the in-process double of its KV API), compared through the API, and backed up from
//! there into a fresh `ferrisfx dev` again; backups rotate (`--keep`) in a directory and in a bucket; a
//! backup taken while events flow restores only whole, finished executions, each as it was;
//! only an administrator backs up or restores, and restored accounts and tokens sign in.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use fx_core::registry::consul_double::ConsulDouble;
use fx_core::testenv;
use fx_core::testsupport::{poll_until, unique, HandlerBuilder};
use fx_tests::processes::cli_command;
use fx_tests::{Api, TestPlatform};
use serde_json::{json, Value};

/// Runs the `ferrisfx` CLI against `server`, without blocking the runtime that serves it (a
/// worker blocked on the child could hold the very task that answers it).
async fn cli(server: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let config = tempfile::tempdir().unwrap();
    cli_command(server, config.path(), args)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("ferrisfx runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A platform with `backends` (JSON of `[backends]`), the keyring in `keyring` and no
/// example.
async fn platform(dir: &Path, keyring: &Path, backends: Value) -> TestPlatform {
    let mut settings = fx_tests::open_settings();
    settings.data_dir = dir.to_path_buf();
    settings.example = false;
    settings.backends = serde_json::from_value(backends).unwrap();
    settings.server.secrets.key_file = Some(keyring.to_path_buf());
    TestPlatform::start_with(settings).await
}

fn keyring(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("keyring");
    std::fs::write(
        &path,
        fx_core::secrets::Keyring::generate_line("backup1").unwrap(),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Fills `api` with one of everything; returns the ids of the executions it made.
async fn fill(api: &Api) {
    api.upload_example("hello").await;
    api.upload_example("workflow-step").await;
    let handler = HandlerBuilder::new("greet")
        .event_type("com.example.greet")
        .package("hello")
        .build();
    api.create_handler(&handler).await;
    let mut changed = serde_json::to_value(&handler).unwrap();
    changed["description"] = json!("says hello");
    let (status, v) = api.put_json("/api/v1/handlers/greet", &changed).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = api.get("/api/v1/packages/hello").await;
    assert_eq!(status, 200, "{v}");
    let version = v["versions"][0]["version"].as_str().unwrap().to_string();
    let (status, v) = api
        .put_json(
            "/api/v1/packages/hello/aliases/stable",
            &json!({"version": version}),
        )
        .await;
    assert!(status < 300, "{v}");
    let (status, v) = api
        .post_json(
            "/api/v1/schedules",
            &json!({"name": "nightly", "cron": "0 3 * * *", "data": {"job": "report"}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = api
        .post_json(
            "/api/v1/workflows",
            &json!({"name": "pair", "steps": [
                {"name": "a", "package": {"name": "workflow-step"}},
                {"name": "b", "package": {"name": "workflow-step"}, "after": [{"step": "a"}]},
            ]}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = api
        .put_json(
            "/api/v1/secrets/api-key",
            &json!({"value": "s3cr3t", "pools": ["default"]}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    for i in 0..5 {
        api.emit(
            &format!("greet-{i}"),
            "com.example.greet",
            json!({"name": i}),
        )
        .await;
    }
    api.wait_succeeded("greet", 5, Duration::from_secs(60), String::new)
        .await;
    let (status, v) = api
        .post_json("/api/v1/workflows/pair/runs", &json!({"input": {}}))
        .await;
    assert_eq!(status, 201, "{v}");
    let run = v["run"].as_str().unwrap().to_string();
    poll_until(
        "the run finishes",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let (_, v) = api.get(&format!("/api/v1/runs/{run}")).await;
            if v["run"]["status"] == "succeeded" {
                Ok(())
            } else {
                Err(v.to_string())
            }
        },
    )
    .await;
}

/// The `[backends]` of a deployment on the PostgreSQL and S3 server of the test command
/// (a fresh schema and bucket), or the embedded ones when they are not set.
fn deployment_backends(name: &str) -> Value {
    let (Ok(postgres), Ok(s3), Ok(key), Ok(secret)) = (
        std::env::var("FX_TEST_POSTGRES"),
        std::env::var("FX_TEST_S3_ENDPOINT"),
        std::env::var("FX_TEST_S3_ACCESS_KEY"),
        std::env::var("FX_TEST_S3_SECRET_KEY"),
    ) else {
        return json!({});
    };
    let run = unique(&format!("fx{name}")).replace('-', "");
    json!({
        "state": {"kind": "postgres", "url": postgres, "schema": run},
        "sink": {"kind": "postgres", "url": postgres, "schema": run},
        "packages": {"kind": "s3", "endpoint": s3, "bucket": run, "access_key": key,
                     "secret_key": secret, "prefix": "packages/"},
    })
}

/// `value` without the registry revisions and versions (they differ between registries).
fn without_revisions(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "revision" | "version_tag"))
                .map(|(k, v)| (k.clone(), without_revisions(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_revisions).collect()),
        other => other.clone(),
    }
}

async fn all_executions(api: &Api) -> Vec<Value> {
    let (status, v) = api.get("/api/v1/executions?limit=500").await;
    assert_eq!(status, 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

/// Compares what `a` and `b` answer at `path`, revisions aside.
async fn same(a: &Api, b: &Api, path: &str) {
    let (sa, va) = a.get(path).await;
    let (sb, vb) = b.get(path).await;
    assert_eq!((sa, sb), (200, 200), "{path}: {va} / {vb}");
    assert_eq!(
        without_revisions(&va),
        without_revisions(&vb),
        "{path} differs after the restore"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_platform_restores_into_postgresql_s3_and_consul_and_back_with_the_cli() {
    let Some(postgres) = testenv::backend("FX_TEST_POSTGRES", "backup round trip") else {
        return;
    };
    let Some(s3) = testenv::backend("FX_TEST_S3_ENDPOINT", "backup round trip") else {
        return;
    };
    let key = std::env::var("FX_TEST_S3_ACCESS_KEY").unwrap();
    let secret = std::env::var("FX_TEST_S3_SECRET_KEY").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = keyring(dir.path());
    let source = platform(&dir.path().join("dev"), &keys, json!({})).await;
    fill(&source).await;

    // Three backups into a directory, keeping two.
    let out = dir.path().join("backups");
    std::fs::create_dir_all(&out).unwrap();
    for _ in 0..3 {
        let done = cli(
            &source.base,
            &[
                "backup",
                "-o",
                out.to_str().unwrap(),
                "--executions-since",
                "1h",
                "--keep",
                "2",
            ],
            &[],
        )
        .await;
        assert!(done.status.success(), "{}", text(&done));
        assert!(text(&done).contains("1 handlers"), "{}", text(&done));
        // Names are per second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&files[1]).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "a backup is readable by its owner only"
        );
    }

    // The same into a bucket, keeping two; a restore from the prefix takes the newest.
    let run = unique("fxbackup").replace('-', "");
    let s3_env = [
        ("FX_BACKUP_S3_ENDPOINT", s3.as_str()),
        ("AWS_ACCESS_KEY_ID", key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
    ];
    let bucket = format!("s3://{run}/nightly/");
    for _ in 0..3 {
        let done = cli(
            &source.base,
            &["backup", "-o", &bucket, "--keep", "2"],
            &s3_env,
        )
        .await;
        assert!(done.status.success(), "{}", text(&done));
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let store = fx_core::objects::s3::S3PackageStore::open(
        &serde_json::from_value(json!({
            "endpoint": s3, "bucket": run, "access_key": key, "secret_key": secret,
            "prefix": "nightly/", "create_bucket": false,
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        store.list_objects("ferrisfx-backup-").await.unwrap().len(),
        2
    );

    // Restore the newest file into PostgreSQL + S3, with the registry in Consul (the
    // in-process double of its KV API: no Consul server can run here).
    let consul = ConsulDouble::start().await.unwrap();
    let target = platform(
        &dir.path().join("deployment"),
        &keys,
        json!({
            "registry": {"kind": "consul", "address": consul.address()},
            "state": {"kind": "postgres", "url": postgres, "schema": run},
            "sink": {"kind": "postgres", "url": postgres, "schema": run},
            "packages": {"kind": "s3", "endpoint": s3, "bucket": run, "access_key": key,
                         "secret_key": secret, "prefix": "packages/"},
        }),
    )
    .await;
    let done = cli(&target.base, &["restore", files[1].to_str().unwrap()], &[]).await;
    assert!(done.status.success(), "{}", text(&done));
    assert!(text(&done).contains("restored:"), "{}", text(&done));

    for path in [
        "/api/v1/handlers",
        "/api/v1/handlers/greet/history",
        "/api/v1/packages",
        "/api/v1/packages/hello",
        "/api/v1/packages/workflow-step",
        "/api/v1/schedules",
        "/api/v1/workflows",
        "/api/v1/secrets",
        "/api/v1/runs",
    ] {
        same(&source, &target, path).await;
    }
    let (_, v) = source.get("/api/v1/packages/hello").await;
    let version = v["versions"][0]["version"].as_str().unwrap().to_string();
    let archive = format!("/api/v1/packages/hello/versions/{version}/archive");
    let (a, b) = (
        source.get_text(&archive).await,
        target.get_text(&archive).await,
    );
    assert_eq!(a.0, 200);
    assert!(a == b, "the package archive differs after the restore");
    let executions = all_executions(&source).await;
    assert_eq!(executions.len(), 7, "5 events and a run of 2 steps");
    assert_eq!(
        without_revisions(&json!(all_executions(&target).await)),
        without_revisions(&json!(executions))
    );
    for execution in &executions {
        same(
            &source,
            &target,
            &format!("/api/v1/executions/{}", execution["id"].as_str().unwrap()),
        )
        .await;
    }

    // A second restore finds the target full; from the bucket, forced, it goes through.
    let again = cli(&target.base, &["restore", files[1].to_str().unwrap()], &[]).await;
    assert!(!again.status.success());
    assert!(text(&again).contains("not empty"), "{}", text(&again));
    let forced = cli(&target.base, &["restore", &bucket, "--force"], &s3_env).await;
    assert!(forced.status.success(), "{}", text(&forced));
    assert!(
        text(&forced).contains("left as they were"),
        "{}",
        text(&forced)
    );
    same(&source, &target, "/api/v1/handlers").await;

    // And back: the deployment's backup restores into a fresh `ferrisfx dev`.
    let back = dir.path().join("back.tar.gz");
    let done = cli(
        &target.base,
        &[
            "backup",
            "-o",
            back.to_str().unwrap(),
            "--executions-since",
            "1h",
        ],
        &[],
    )
    .await;
    assert!(done.status.success(), "{}", text(&done));
    let home = platform(&dir.path().join("home"), &keys, json!({})).await;
    let done = cli(&home.base, &["restore", back.to_str().unwrap()], &[]).await;
    assert!(done.status.success(), "{}", text(&done));
    for path in [
        "/api/v1/handlers",
        "/api/v1/handlers/greet/history",
        "/api/v1/packages",
        "/api/v1/schedules",
        "/api/v1/workflows",
        "/api/v1/secrets",
    ] {
        same(&source, &home, path).await;
    }
    assert_eq!(
        without_revisions(&json!(all_executions(&home).await)),
        without_revisions(&json!(executions))
    );
    home.stop().await;
    target.stop().await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_events_flow_restores_whole_finished_executions() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyring(dir.path());
    let source = platform(&dir.path().join("a"), &keys, json!({})).await;
    source.upload_example("hello").await;
    let revision = source
        .create_handler(
            &HandlerBuilder::new("flow")
                .event_type("com.example.flow")
                .package("hello")
                .build(),
        )
        .await["revision"]
        .as_u64()
        .unwrap();
    source.until_gateway_sees(revision).await;
    for i in 0..20 {
        source
            .emit(&format!("before-{i}"), "com.example.flow", json!({"i": i}))
            .await;
    }
    source
        .wait_succeeded("flow", 20, Duration::from_secs(60), String::new)
        .await;
    // Events keep coming while the backup is taken.
    let sender = {
        let api: Api = (*source).clone();
        tokio::spawn(async move {
            for i in 0..200 {
                api.emit(&format!("during-{i}"), "com.example.flow", json!({"i": i}))
                    .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = source
        .http
        .post(format!(
            "{}/api/v1/backup?executions_since=2000-01-01T00:00:00Z",
            source.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/gzip");
    let archive = response.bytes().await.unwrap().to_vec();
    sender.await.unwrap();

    // Into PostgreSQL and S3 where the test command started them (always under CI).
    let target = platform(&dir.path().join("b"), &keys, deployment_backends("flow")).await;
    let (status, report) = target
        .post_raw(
            "/api/v1/restore",
            &[("content-type", "application/gzip")],
            archive.clone(),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let restored = all_executions(&target).await;
    let ids: Vec<&str> = restored
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    for i in 0..20 {
        assert!(
            ids.contains(&format!("before-{i}").as_str()),
            "before-{i} is missing"
        );
    }
    assert!(restored.len() >= 20 && restored.len() <= 220);
    assert_eq!(
        report["restored"]["executions"].as_u64(),
        Some(restored.len() as u64),
        "{report}"
    );
    for execution in &restored {
        assert!(
            execution["status"] == "succeeded",
            "only finished executions: {execution}"
        );
        same(
            &source,
            &target,
            &format!("/api/v1/executions/{}", execution["id"].as_str().unwrap()),
        )
        .await;
    }

    // A damaged archive is refused whole; nothing is written.
    let empty = platform(&dir.path().join("c"), &keys, json!({})).await;
    let mut damaged = archive;
    let middle = damaged.len() / 2;
    damaged.truncate(middle);
    let (status, v) = empty
        .post_raw(
            "/api/v1/restore",
            &[("content-type", "application/gzip")],
            damaged,
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("backup"), "{v}");
    let (_, handlers) = empty.get("/api/v1/handlers").await;
    assert_eq!(handlers["handlers"], json!([]), "{handlers}");
    empty.stop().await;
    target.stop().await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_backs_up_and_accounts_and_tokens_work_after_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyring(dir.path());
    let with_auth = |name: &str| {
        let mut settings = ferrisfx::settings::Settings {
            data_dir: dir.path().join(name),
            example: false,
            ..ferrisfx::settings::Settings::default()
        };
        settings.server.secrets.key_file = Some(keys.clone());
        settings
    };
    let source = TestPlatform::start_with(with_auth("a")).await;
    let admin = Api::with_token(source.base.clone(), &source.admin_token().unwrap());
    let (status, v) = admin
        .post_json(
            "/api/v1/accounts",
            &json!({"name": "alice", "password": "a long enough password"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let login = |base: String| async move {
        Api::new(base)
            .post_json(
                "/api/v1/login",
                &json!({"name": "alice", "password": "a long enough password"}),
            )
            .await
    };
    let (status, v) = login(source.base.clone()).await;
    assert_eq!(status, 201, "{v}");
    let alice = Api::with_token(source.base.clone(), v["token"].as_str().unwrap());

    // Without a token 401, as alice (no rule grants her user:admin) 403, as the admin 200.
    let backup = |api: &Api| api.http.post(format!("{}/api/v1/backup", api.base)).send();
    assert_eq!(backup(&source).await.unwrap().status(), 401);
    assert_eq!(backup(&alice).await.unwrap().status(), 403);
    let response = backup(&admin).await.unwrap();
    assert_eq!(response.status(), 200);
    let archive = response.bytes().await.unwrap().to_vec();
    let (status, _) = alice
        .post_raw(
            "/api/v1/restore",
            &[("content-type", "application/gzip")],
            archive.clone(),
        )
        .await;
    assert_eq!(status, 403, "a restore needs an admin too");

    // Into another platform with its own admin: alice signs in there with her password, and
    // the source admin's token works there (its hash was restored); the target's own admin
    // account was left as it was.
    let target = TestPlatform::start_with(with_auth("b")).await;
    let target_admin = Api::with_token(target.base.clone(), &target.admin_token().unwrap());
    let (status, report) = target_admin
        .post_raw(
            "/api/v1/restore",
            &[("content-type", "application/gzip")],
            archive,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["kept"]["accounts"], 1, "{report}");
    let (status, v) = login(target.base.clone()).await;
    assert_eq!(status, 201, "alice signs in after the restore: {v}");
    let moved = Api::with_token(target.base.clone(), &source.admin_token().unwrap());
    let (status, v) = moved.get("/api/v1/me").await;
    assert_eq!(status, 200, "{v}");
    target.stop().await;
    source.stop().await;
}
