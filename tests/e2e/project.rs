//! Declarative configuration and the developer's loop (issue 20): `ferrisfx apply` of a
//! project file is idempotent, updates only what changed, prunes what the file dropped and
//! fails on a concurrent edit instead of overwriting it; `ferrisfx export` round-trips;
//! `ferrisfx deploy` of a project scaffolded in each language yields a running handler.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use fx_tests::processes::cli_command;
use fx_tests::{Api, TestPlatform};
use serde_json::{json, Value};

/// Runs the `ferrisfx` CLI against `server` in `dir`, without blocking the runtime that serves
/// it.
async fn cli_in(dir: &Path, server: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let config = tempfile::tempdir().unwrap();
    cli_command(server, config.path(), args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("ferrisfx runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn both(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Each handler's revision, by name.
async fn revisions(api: &Api) -> Vec<(String, u64)> {
    let (status, v) = api.get("/api/v1/handlers").await;
    assert_eq!(status, 200, "{v}");
    v["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["handler"]["name"].as_str().unwrap().to_string(),
                h["revision"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn project_file(b_greeting: &str, with_b: bool) -> String {
    let mut text = String::from(
        "packages: []\n\
         handlers:\n\
         \x20 - name: alpha\n\
         \x20   package: hello\n\
         \x20   filter: {exact: {attribute: type, value: com.example.alpha}}\n",
    );
    if with_b {
        text.push_str(&format!(
            "\x20 - name: beta\n\
             \x20   package: hello@latest\n\
             \x20   filter: {{prefix: {{attribute: type, value: com.example.beta}}}}\n\
             \x20   config: {{greeting: {b_greeting}}}\n"
        ));
    }
    text.push_str(
        "schedules:\n\
         \x20 - name: hourly\n\
         \x20   every_seconds: 3600\n",
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_is_idempotent_updates_only_the_edited_entry_and_prunes_what_the_file_dropped() {
    let data = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(data.path(), false).await;
    fx.upload_example("hello").await;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("ferrisfx.yaml");
    let server = fx.base.clone();
    let run = |args: Vec<&'static str>| {
        let server = server.clone();
        let dir = work.path().to_path_buf();
        async move { cli_in(&dir, &server, &args, &[]).await }
    };

    // First apply: both handlers and the schedule are created.
    std::fs::write(&file, project_file("Hi", true)).unwrap();
    let first = run(vec!["apply"]).await;
    assert!(first.status.success(), "{}", both(&first));
    let out = stdout(&first);
    assert!(
        out.contains("3 to create, 0 to update, 0 to delete"),
        "{out}"
    );
    assert!(
        out.contains("handler alpha created") && out.contains("handler beta created"),
        "{out}"
    );
    assert!(out.contains("schedule hourly created"), "{out}");
    let created = revisions(&fx).await;
    assert_eq!(created.len(), 2, "{created:?}");

    // The same file again changes nothing, and `diff --exit-code` agrees.
    let again = run(vec!["apply", "-f", "ferrisfx.yaml"]).await;
    assert!(again.status.success(), "{}", both(&again));
    assert!(
        stdout(&again).contains("no changes (3 entries as the file says)"),
        "{}",
        both(&again)
    );
    assert_eq!(revisions(&fx).await, created);
    let same = run(vec!["diff", "--exit-code"]).await;
    assert_eq!(same.status.code(), Some(0), "{}", both(&same));
    let (_, history) = fx.get("/api/v1/handlers/alpha/history").await;
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");

    // Editing one handler: the diff names it and its field, apply updates it alone.
    std::fs::write(&file, project_file("Howdy", true)).unwrap();
    let edited = run(vec!["diff", "--exit-code"]).await;
    assert_eq!(edited.status.code(), Some(9), "{}", both(&edited));
    let out = stdout(&edited);
    assert!(out.contains("~ handler beta (update: config)"), "{out}");
    assert!(
        out.contains(r#"config: {"greeting":"Hi"} -> {"greeting":"Howdy"}"#),
        "{out}"
    );
    let update = run(vec!["apply"]).await;
    assert!(update.status.success(), "{}", both(&update));
    let out = stdout(&update);
    assert!(
        out.contains("0 to create, 1 to update, 0 to delete, 2 unchanged"),
        "{out}"
    );
    assert!(!out.contains("alpha"), "{out}");
    let updated = revisions(&fx).await;
    assert_eq!(updated[0], created[0], "alpha untouched");
    assert!(updated[1].1 > created[1].1, "beta rewritten: {updated:?}");
    let (_, beta) = fx.get("/api/v1/handlers/beta").await;
    assert_eq!(beta["handler"]["config"]["greeting"], "Howdy", "{beta}");

    // Dropping a handler from the file: kept without --prune, deleted with it.
    std::fs::write(&file, project_file("Howdy", false)).unwrap();
    let kept = run(vec!["apply"]).await;
    assert!(stdout(&kept).contains("no changes"), "{}", both(&kept));
    assert_eq!(revisions(&fx).await.len(), 2);
    let pruned = run(vec!["apply", "--prune"]).await;
    assert!(pruned.status.success(), "{}", both(&pruned));
    assert!(
        stdout(&pruned).contains("handler beta deleted"),
        "{}",
        both(&pruned)
    );
    let (status, _) = fx.get("/api/v1/handlers/beta").await;
    assert_eq!(status, 404);
    let (status, _) = fx.get("/api/v1/schedules/hourly").await;
    assert_eq!(status, 200, "the schedule the file names stays");

    // The handler the file made runs the function.
    fx.emit("e-alpha", "com.example.alpha", json!({"name": "file"}))
        .await;
    fx.wait_event_succeeded("alpha", "e-alpha", Duration::from_secs(30))
        .await;

    // Export writes the same state: applying it with --prune changes nothing.
    let export = run(vec!["export", "--out", "exported.yaml"]).await;
    assert!(export.status.success(), "{}", both(&export));
    let text = std::fs::read_to_string(work.path().join("exported.yaml")).unwrap();
    let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(doc["handlers"][0]["name"], "alpha", "{text}");
    assert_eq!(doc["schedules"][0]["name"], "hourly", "{text}");
    assert_eq!(doc["workflows"], json!([]), "{text}");
    let round = run(vec!["apply", "--prune", "-f", "exported.yaml"]).await;
    assert!(stdout(&round).contains("no changes"), "{}", both(&round));

    // A mistake in the file is named, with a usage-free exit status and nothing written.
    std::fs::write(&file, "handlers:\n  - name: broken\n    package: hello\n").unwrap();
    let broken = run(vec!["apply"]).await;
    assert_eq!(broken.status.code(), Some(1), "{}", both(&broken));
    assert!(
        both(&broken).contains("handlers[0] (broken): not a valid handler"),
        "{}",
        both(&broken)
    );
    assert_eq!(revisions(&fx).await.len(), 1);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_edit_fails_the_apply_with_the_reason_and_is_kept() {
    let data = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(data.path(), false).await;
    fx.upload_example("hello").await;
    let api = ferrisfx::client::Api::new(&fx.base);
    let text = |greeting: &str| {
        format!(
            "handlers:\n  - name: shared\n    package: hello\n    filter: {{exact: {{attribute: type, value: com.example.shared}}}}\n    config: {{greeting: {greeting}}}\n"
        )
    };
    let base = PathBuf::from(".");
    let first = ferrisfx::project::Project::parse(&text("One"), base.clone()).unwrap();
    let plan = ferrisfx::project::plan(&api, &first, false).await.unwrap();
    ferrisfx::project::execute(&api, &plan, &mut Vec::new())
        .await
        .unwrap();

    // The plan to change it is made; someone else edits it before it is carried out.
    let mine = ferrisfx::project::Project::parse(&text("Mine"), base).unwrap();
    let plan = ferrisfx::project::plan(&api, &mine, false).await.unwrap();
    let (_, mut theirs) = fx.get("/api/v1/handlers/shared").await;
    theirs["handler"]["config"]["greeting"] = json!("Theirs");
    let (status, v) = fx
        .put_json("/api/v1/handlers/shared", &theirs["handler"])
        .await;
    assert_eq!(status, 200, "{v}");

    let err = ferrisfx::project::execute(&api, &plan, &mut Vec::new())
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("handler \"shared\" changed on the server since the plan was made"),
        "{message}"
    );
    assert_eq!(ferrisfx::exit::code(&err), 6, "{message}");
    let (_, now) = fx.get("/api/v1/handlers/shared").await;
    assert_eq!(
        now["handler"]["config"]["greeting"], "Theirs",
        "their edit is kept"
    );
    fx.stop().await;
}

/// Where the test command's tools are: `FX_TOOLS_DIR` or `~/.cache/ferrisfx/tools`.
fn tools_dir() -> PathBuf {
    std::env::var_os("FX_TOOLS_DIR").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/ferrisfx/tools")
        },
        PathBuf::from,
    )
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What a scaffold in `lang` needs to build here without the network, as environment
/// variables, after preparing its folder; `None` (with the reason) when the tools
/// `build-examples.sh` installs are missing.
fn build_environment(lang: &str, project: &Path) -> Result<Vec<(String, String)>, String> {
    let tools = tools_dir();
    match lang {
        "rust" => {
            // The examples' lock and target folder: only the function and the vendored SDK
            // compile.
            std::fs::copy(
                repo().join("examples/Cargo.lock"),
                project.join("Cargo.lock"),
            )
            .map_err(|e| format!("examples/Cargo.lock: {e}"))?;
            let target = repo().join("examples/target");
            Ok(vec![(
                "CARGO_TARGET_DIR".into(),
                target.to_string_lossy().into_owned(),
            )])
        }
        "python" => {
            let requirements =
                std::fs::read_to_string(repo().join("examples/hello-python/requirements.txt"))
                    .unwrap();
            let version = requirements
                .lines()
                .find_map(|l| l.strip_prefix("componentize-py=="))
                .expect("a componentize-py pin")
                .trim()
                .to_string();
            let tool = tools.join(format!("componentize-py-{version}/bin/componentize-py"));
            if !tool.is_file() {
                return Err(format!("{} is missing", tool.display()));
            }
            Ok(vec![(
                "FX_COMPONENTIZE_PY".into(),
                tool.to_string_lossy().into_owned(),
            )])
        }
        "js" => {
            let wanted: Value = serde_json::from_str(
                &std::fs::read_to_string(repo().join("examples/hello-js/package.json")).unwrap(),
            )
            .unwrap();
            let modules = std::fs::read_dir(&tools)
                .map_err(|e| format!("{}: {e}", tools.display()))?
                .flatten()
                .map(|e| e.path())
                .find(|home| {
                    home.join(".installed").is_file()
                        && std::fs::read_to_string(home.join("package.json"))
                            .ok()
                            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                            .is_some_and(|p| p["devDependencies"] == wanted["devDependencies"])
                })
                .ok_or_else(|| format!("no componentize-js install in {}", tools.display()))?;
            std::os::unix::fs::symlink(modules.join("node_modules"), project.join("node_modules"))
                .unwrap();
            Ok(vec![])
        }
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_of_a_scaffold_in_each_language_yields_a_running_handler() {
    let data = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(data.path(), false).await;
    let work = tempfile::tempdir().unwrap();
    for lang in ["rust", "python", "js"] {
        let name = format!("deployed-{lang}");
        let made = cli_in(work.path(), &fx.base, &["new", "--lang", lang, &name], &[]).await;
        assert!(made.status.success(), "{}", both(&made));
        let project = work.path().join(&name);
        assert!(
            project.join("ferrisfx.yaml").is_file(),
            "the scaffold has a project file"
        );
        let env = match build_environment(lang, &project) {
            Ok(env) => env,
            Err(reason) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!(
                    "skipping the {lang} deploy: {reason} (run infra/scripts/build-examples.sh)"
                );
                continue;
            }
            Err(reason) => panic!("{lang}: {reason}; the test command installs the guest tools"),
        };
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

        let deployed = cli_in(&project, &fx.base, &["deploy"], &env).await;
        assert!(deployed.status.success(), "{lang}: {}", both(&deployed));
        let out = stdout(&deployed);
        assert!(
            out.contains(&format!("package {name}@0.1.0 uploaded")),
            "{lang}: {out}"
        );
        assert!(
            out.contains(&format!("handler {name} created")),
            "{lang}: {out}"
        );
        assert!(
            out.contains(&format!("{}/executions?handler={name}", fx.base)),
            "{lang}: {out}"
        );

        let event = format!("e-{lang}");
        fx.emit(&event, "com.example.hello", json!({"name": lang}))
            .await;
        fx.wait_event_succeeded(&name, &event, Duration::from_secs(120))
            .await;

        // Deploying again without a change uploads and changes nothing.
        let again = cli_in(&project, &fx.base, &["deploy"], &env).await;
        assert!(again.status.success(), "{lang}: {}", both(&again));
        let out = stdout(&again);
        assert!(
            out.contains(&format!("package {name}@0.1.0 unchanged")),
            "{lang}: {out}"
        );
        assert!(out.contains("no changes"), "{lang}: {out}");
    }
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_code_under_an_unchanged_version_goes_up_as_a_development_build() {
    use fx_core::package::PackageArchive;
    let data = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(data.path(), false).await;
    let api = ferrisfx::client::Api::new(&fx.base);
    let original = fx_tests::example_package("hello");
    let outcome = ferrisfx::deploy::ensure_package(&api, original.clone(), true)
        .await
        .unwrap();
    assert!(outcome.to_string().contains("uploaded"), "{outcome}");
    let again = ferrisfx::deploy::ensure_package(&api, original.clone(), true)
        .await
        .unwrap();
    assert!(again.to_string().ends_with("unchanged"), "{again}");

    // Other contents, same version: refused for a release archive, a dev build in deploy.
    let mut archive = PackageArchive::parse(&original, u64::MAX).unwrap();
    archive.manifest.description = "changed".into();
    let changed = PackageArchive::build(&archive.manifest, &archive.component).unwrap();
    let version = archive.manifest.version.clone();
    let err = ferrisfx::deploy::ensure_package(&api, changed.clone(), false)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("bump `version` in fx.toml"),
        "{err:#}"
    );
    assert_eq!(ferrisfx::exit::code(&err), 6, "a conflict: {err:#}");
    let dev = ferrisfx::deploy::ensure_package(&api, changed.clone(), true)
        .await
        .unwrap();
    let ferrisfx::deploy::PackageOutcome::Uploaded {
        version: dev_version,
        ..
    } = &dev
    else {
        panic!("{dev}");
    };
    assert!(dev_version.starts_with(&format!("{version}+dev.")), "{dev}");
    let (_, package) = fx.get("/api/v1/packages/hello").await;
    assert_eq!(
        package["aliases"]["latest"],
        json!(dev_version),
        "{package}"
    );
    // The same changed contents again: the dev build counts as unchanged.
    let same = ferrisfx::deploy::ensure_package(&api, changed, true)
        .await
        .unwrap();
    assert_eq!(
        same,
        ferrisfx::deploy::PackageOutcome::Unchanged {
            name: "hello".into(),
            version: dev_version.clone()
        }
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_statuses_say_what_failed() {
    let data = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(data.path(), false).await;
    fx.upload_example("hello").await;
    let here = tempfile::tempdir().unwrap();
    let run = |server: String, args: Vec<&'static str>| {
        let dir = here.path().to_path_buf();
        async move { cli_in(&dir, &server, &args, &[]).await }
    };
    let create = vec![
        "handler",
        "create",
        "--name",
        "h",
        "--package",
        "hello",
        "--type",
        "com.x",
    ];
    let cases: Vec<(String, Vec<&'static str>, i32, &str)> = vec![
        (fx.base.clone(), create.clone(), 0, ""),
        (fx.base.clone(), create, 6, "409"),
        (fx.base.clone(), vec!["handler", "delete", "nope"], 5, "404"),
        (
            fx.base.clone(),
            vec![
                "handler",
                "create",
                "--name",
                "Bad Name",
                "--package",
                "hello",
                "--type",
                "x",
            ],
            1,
            "",
        ),
        (
            fx.base.clone(),
            vec![
                "handler",
                "create",
                "--name",
                "p",
                "--package",
                "missing",
                "--type",
                "x",
            ],
            7,
            "does not exist",
        ),
        (
            fx.base.clone(),
            vec!["handler", "list", "--bogus"],
            2,
            "--bogus",
        ),
        (
            "http://127.0.0.1:9".to_string(),
            vec!["handler", "list"],
            3,
            "cannot reach the management server",
        ),
    ];
    for (server, args, want, says) in cases {
        let output = run(server, args.clone()).await;
        assert_eq!(
            output.status.code(),
            Some(want),
            "{args:?}: {}",
            both(&output)
        );
        assert!(both(&output).contains(says), "{args:?}: {}", both(&output));
    }
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_every_kind_applies_back_unchanged_and_recreates_what_was_pruned() {
    let data = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(data.path(), false).await;
    fx.upload_example("hello").await;
    fx.handler("hello", "hello", "com.example.hello", json!({}))
        .await;
    for (path, body) in [
        (
            "/api/v1/schedules",
            json!({"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris",
                   "data": {"report": "daily"}}),
        ),
        (
            "/api/v1/hooks",
            json!({"name": "ping", "verify": {"kind": "none"},
                   "transform": {"kind": "json", "type": "com.example.ping"}}),
        ),
        (
            "/api/v1/notifications",
            json!({"name": "oncall", "handlers": ["hello"], "on": ["failed"],
                   "target": {"kind": "webhook", "url": "http://127.0.0.1:9/alerts"}}),
        ),
        (
            "/api/v1/workflows",
            json!({"name": "two", "steps": [
                {"name": "a", "package": {"name": "hello", "version": "latest"}},
                {"name": "b", "handler": "hello", "after": [{"step": "a"}]}]}),
        ),
    ] {
        let (status, v) = fx.post_json(path, &body).await;
        assert_eq!(status, 201, "{path}: {v}");
    }
    let work = tempfile::tempdir().unwrap();
    let run = |args: Vec<&'static str>| {
        let server = fx.base.clone();
        let dir = work.path().to_path_buf();
        async move { cli_in(&dir, &server, &args, &[]).await }
    };
    let export = run(vec!["export", "--out", "all.yaml"]).await;
    assert!(export.status.success(), "{}", both(&export));
    let same = run(vec!["diff", "--prune", "--exit-code", "-f", "all.yaml"]).await;
    assert_eq!(same.status.code(), Some(0), "{}", both(&same));
    assert!(
        stdout(&same).contains("no changes (5 entries as the file says)"),
        "{}",
        both(&same)
    );

    // A file declaring every kind empty, with --prune, deletes everything, in an order the
    // server accepts (the notification rule and workflow before the handler they name).
    std::fs::write(
        work.path().join("empty.yaml"),
        "handlers: []\nworkflows: []\nschedules: []\nhooks: []\nbundles: []\nnotifications: []\n",
    )
    .unwrap();
    let emptied = run(vec!["apply", "--prune", "-f", "empty.yaml"]).await;
    assert!(emptied.status.success(), "{}", both(&emptied));
    assert!(
        stdout(&emptied).contains("0 to create, 0 to update, 5 to delete"),
        "{}",
        both(&emptied)
    );
    for path in [
        "handlers",
        "schedules",
        "hooks",
        "notifications",
        "workflows",
    ] {
        let (_, v) = fx.get(&format!("/api/v1/{path}")).await;
        assert_eq!(v[path], json!([]), "{path}: {v}");
    }

    // The export puts it all back, and then there is nothing left to do.
    let restored = run(vec!["apply", "-f", "all.yaml"]).await;
    assert!(restored.status.success(), "{}", both(&restored));
    assert!(
        stdout(&restored).contains("5 to create"),
        "{}",
        both(&restored)
    );
    let again = run(vec!["diff", "--prune", "--exit-code", "-f", "all.yaml"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", both(&again));
    let (_, schedule) = fx.get("/api/v1/schedules/nightly").await;
    assert_eq!(
        schedule["schedule"]["timezone"], "Europe/Paris",
        "{schedule}"
    );
    fx.stop().await;
}
