//! `ferrisfx setup`: prepares a distributed deployment's backends before (or while) its
//! processes start, and may be run again at any time (every step is idempotent). The Helm
//! chart runs it as a post-install/upgrade job and the compose file as one-shot services.
//!
//! 1. Connects to every configured backend as the processes do, which applies the PostgreSQL
//!    migrations (state store and log sink) and creates the S3 bucket when `create_bucket` is
//!    on; waits (up to `--wait-secs`) while a backend is unavailable.
//! 2. Creates the Kafka topics `fx.events`, `fx.state`, `fx.deadletter` and
//!    `fx.invocations.<pool>` for every `--pool`, through the bus as on first use (each topic
//!    is subscribed once by the consumer group `fx-setup`, which never commits).
//! 3. With `--kibana-url`, imports every `*.ndjson` saved-objects file of `--kibana-objects`
//!    into Kibana (`POST /api/saved_objects/_import?overwrite=true`), after waiting for
//!    Kibana's `/api/status` to answer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use fx_core::bus::topics;
use tokio_util::sync::CancellationToken;

use crate::settings::{Settings, SettingsArgs};

/// Flags of `ferrisfx setup`.
#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// Settings, as for `dev`.
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Executor pool whose invocations topic to create (repeat for several; default: the
    /// `executor.pool` setting).
    #[arg(long = "pool", value_name = "NAME")]
    pub pools: Vec<String>,
    /// Kibana to import the saved objects into, e.g. `http://kibana:5601` (no import without).
    #[arg(long, env = "KIBANA_URL")]
    pub kibana_url: Option<String>,
    /// Directory of Kibana saved objects (`*.ndjson`) to import.
    #[arg(long, default_value = "infra/kibana")]
    pub kibana_objects: PathBuf,
    /// Kibana user (basic authentication), when Kibana has security on.
    #[arg(long, env = "KIBANA_USERNAME")]
    pub kibana_username: Option<String>,
    /// Kibana password (basic authentication).
    #[arg(long, env = "KIBANA_PASSWORD", hide_env_values = true)]
    pub kibana_password: Option<String>,
    /// Only import the Kibana saved objects: no backends, topics or migrations.
    #[arg(long)]
    pub kibana_only: bool,
    /// How long to wait for an unavailable backend or Kibana, in seconds.
    #[arg(long, default_value_t = 300)]
    pub wait_secs: u64,
}

/// Runs `ferrisfx setup`.
pub async fn run(args: SetupArgs) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    if !args.kibana_only {
        prepare_backends(&args, deadline).await?;
    }
    if let Some(url) = &args.kibana_url {
        import_saved_objects(&args, url, deadline).await?;
    }
    Ok(())
}

/// `ferrisfx check-config`: loads the settings as every process does and checks what can be
/// checked without the backends; prints `settings ok` (never the settings: they hold secrets).
pub fn check_config(args: &SettingsArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args)?;
    settings
        .server
        .validate()
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    fx_core::validate::validate_name("executor pool", &settings.executor.pool)
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    println!("settings ok");
    Ok(())
}

/// Steps 1 and 2: migrations and bucket (by connecting), then topics.
async fn prepare_backends(args: &SetupArgs, deadline: Instant) -> anyhow::Result<()> {
    let mut settings = Settings::load(&args.settings)?;
    let pools = if args.pools.is_empty() {
        vec![settings.executor.pool.clone()]
    } else {
        args.pools.clone()
    };
    for pool in &pools {
        fx_core::validate::validate_name("executor pool", pool)
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
    }
    settings.executor.pool = pools[0].clone();
    let give_up = CancellationToken::new();
    {
        let give_up = give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            give_up.cancel();
        });
    }
    let Some(backends) = crate::process::connect(&settings, &give_up).await? else {
        anyhow::bail!(
            "a backend was still unavailable after {} s (see the warnings above)",
            args.wait_secs
        );
    };
    println!("backends ready: migrations applied, package store open");
    if !backends.bus.shared() {
        println!("backends.bus is embedded: no topics to create");
        return Ok(());
    }
    let mut names = vec![
        topics::EVENTS.to_string(),
        topics::STATE.to_string(),
        topics::DEADLETTER.to_string(),
    ];
    names.extend(pools.iter().map(|pool| topics::invocations(pool)));
    for topic in &names {
        backends
            .bus
            .ensure_topics(std::slice::from_ref(topic))
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))
            .with_context(|| format!("creating topic {topic}"))?;
        println!("topic {topic} ready");
    }
    Ok(())
}

/// Step 3: the Kibana saved objects.
async fn import_saved_objects(
    args: &SetupArgs,
    url: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    let files = saved_object_files(&args.kibana_objects)?;
    let base = url.trim_end_matches('/');
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the http client")?;
    let auth = |request: reqwest::RequestBuilder| match &args.kibana_username {
        Some(user) => request.basic_auth(user, args.kibana_password.as_deref()),
        None => request,
    };
    wait_for_kibana(&http, base, &auth, deadline).await?;
    for file in files {
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "objects.ndjson".into());
        let (content_type, body) = multipart_file(&name, &bytes);
        let response = auth(
            http.post(format!("{base}/api/saved_objects/_import?overwrite=true"))
                .header("kbn-xsrf", "true")
                .header("content-type", content_type)
                .body(body),
        )
        .send()
        .await
        .with_context(|| format!("importing {} into kibana at {base}", file.display()))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let outcome: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if !status.is_success() || outcome["success"] != serde_json::Value::Bool(true) {
            anyhow::bail!(
                "kibana refused the saved objects of {}: {status} {text}",
                file.display()
            );
        }
        println!(
            "imported {} saved objects from {}",
            outcome["successCount"],
            file.display()
        );
    }
    Ok(())
}

/// The `*.ndjson` files of `dir`, sorted by name; at least one.
fn saved_object_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the saved objects directory {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "ndjson") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        anyhow::bail!("no *.ndjson saved objects in {}", dir.display());
    }
    Ok(files)
}

/// Waits until Kibana's status API answers 200 (it answers 503 while starting).
async fn wait_for_kibana(
    http: &reqwest::Client,
    base: &str,
    auth: &impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let why = match auth(http.get(format!("{base}/api/status"))).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => format!("answered {}", response.status()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            anyhow::bail!("kibana at {base} is not available: {why}");
        }
        tracing::info!(kibana = base, reason = %why, "waiting for kibana");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// A `multipart/form-data` body with one file field named `file`: its content type and bytes.
fn multipart_file(name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = format!("ferrisfx-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::with_capacity(bytes.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: application/ndjson\r\n\r\n",
            name.replace('"', "")
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_multipart_body_carries_the_file_between_boundaries() {
        let (content_type, body) = multipart_file("fx.ndjson", b"{\"a\":1}\n");
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        let body = String::from_utf8(body).unwrap();
        assert!(body.starts_with(&format!("--{boundary}\r\n")));
        assert!(body.contains("filename=\"fx.ndjson\""));
        assert!(body.contains("\r\n\r\n{\"a\":1}\n\r\n"));
        assert!(body.ends_with(&format!("--{boundary}--\r\n")));
    }

    #[test]
    fn a_directory_without_saved_objects_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.ndjson"), "{}\n").unwrap();
        std::fs::write(dir.path().join("a.ndjson"), "{}\n").unwrap();
        std::fs::write(dir.path().join("README.md"), "").unwrap();
        let files = saved_object_files(dir.path()).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap()).collect();
        assert_eq!(names, ["a.ndjson", "b.ndjson"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(saved_object_files(empty.path()).is_err());
    }
}
