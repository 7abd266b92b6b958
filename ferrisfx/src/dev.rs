//! `ferrisfx dev`: the whole platform in one process (gateway, executor, management server)
//! on embedded backends under one data directory, with an example function ready.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use fx_core::backends::Backends;
use management_server::AppState;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::settings::{Settings, SettingsArgs};

/// The example package installed on first start (built from `examples/hello`; rebuilt by
/// `infra/scripts/build-examples.sh --update-prebuilt`).
pub const EXAMPLE_PACKAGE: &[u8] = include_bytes!("../../examples/prebuilt/hello.fxpkg");
/// The event type the example handler runs on.
pub const EXAMPLE_EVENT_TYPE: &str = "com.example.hello";

/// A running platform.
pub struct Platform {
    /// Where the web UI and API listen.
    pub addr: SocketAddr,
    /// The backends every part shares.
    pub backends: Backends,
    /// The handler table the gateway matches events against (its revision tells which
    /// handler changes the gateway has seen).
    pub gateway_table: fx_gateway::table::LiveTable,
    /// With authentication on: an API token of the local admin, made at start.
    pub admin_token: Option<String>,
    /// The trace exporter (`[telemetry]`), stopped once every part has.
    pub traces: crate::traces::Traces,
    shutdown: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Platform {
    /// Starts every part on `listener`; stops when `shutdown` is cancelled.
    pub async fn start(
        settings: Settings,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Platform> {
        let addr = listener
            .local_addr()
            .context("reading the listener's address")?;
        let traces = crate::traces::Traces::start(&settings.telemetry, "dev")
            .context("starting the trace exporter (telemetry)")?;
        let backends = settings
            .backends
            .build(&settings.data_dir)
            .await
            .with_context(|| format!("opening the data directory {}", settings.data_dir.display()))?
            .with_tracer(traces.tracer());
        let mut executor_settings = settings.executor.clone();
        if executor_settings.cache_dir.as_os_str().is_empty() {
            executor_settings.cache_dir = settings.data_dir.join("cache");
        }
        if executor_settings.secrets_dir.is_none() {
            // One file per secret, named like it: `echo -n value > <data_dir>/secrets/name`.
            let dir = settings.data_dir.join("secrets");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating the secrets directory {}", dir.display()))?;
            executor_settings.secrets_dir = Some(dir);
        }
        // Platform secrets: sealed with the configured keyring, else with one made for this
        // data directory; the executor receives them in process.
        let keyring = dev_keyring(&settings).context("preparing the secrets keyring")?;
        let vault = fx_core::secrets::Vault::new(backends.secrets.clone(), Some(keyring));
        let executor = fx_executor::Executor::new(
            executor_settings,
            backends.packages.clone(),
            backends.bus.clone(),
        )
        .context("starting the executor")?
        .with_secret_delivery(std::sync::Arc::new(vault.clone()))
        .with_tracer(traces.tracer());
        let executor = std::sync::Arc::new(executor);
        let mut tasks = JoinSet::new();
        {
            let (executor, shutdown) = (executor.clone(), shutdown.clone());
            tasks.spawn(async move { executor.run(shutdown).await.context("executor stopped") });
        }
        let gateway_table =
            fx_gateway::table::LiveTable::start(backends.registry.clone(), shutdown.clone())
                .await
                .context("loading the handler table")?;
        {
            let (gateway, backends, table, shutdown) = (
                settings.gateway.clone(),
                backends.clone(),
                gateway_table.clone(),
                shutdown.clone(),
            );
            tasks.spawn(async move {
                fx_gateway::run_with_table(gateway, backends, table, shutdown)
                    .await
                    .context("gateway stopped")
            });
        }
        let admin_token = match settings.server.auth.enabled {
            true => local_admin(&settings, &backends)
                .await
                .context("preparing the local admin")?,
            false => None,
        };
        {
            let state = AppState::new(backends.clone(), settings.server.clone())
                .with_vault(vault)
                .with_check(executor)
                .with_telemetry(settings.telemetry.clone());
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                management_server::serve(listener, state, shutdown)
                    .await
                    .context("management server stopped")
            });
        }
        if settings.example {
            install_example(&settings.data_dir, addr, admin_token.as_deref())
                .await
                .context("installing the example function")?;
        }
        tracing::info!(%addr, data_dir = %settings.data_dir.display(), "ferrisfx dev is up: open http://{addr}/");
        Ok(Platform {
            addr,
            backends,
            gateway_table,
            admin_token,
            traces,
            shutdown,
            tasks,
        })
    }

    /// Waits until the gateway matches events against handler revision `revision` or a later
    /// one, or `within` passes; whether it does.
    pub async fn gateway_sees(&self, revision: u64, within: std::time::Duration) -> bool {
        let mut table = self.gateway_table.clone();
        tokio::time::timeout(within, table.wait_for_revision(revision))
            .await
            .is_ok()
    }

    /// Waits until every part has stopped; the first failure stops the others.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            let outcome = joined.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(e) = outcome {
                tracing::error!(error = %format!("{e:#}"), "stopping: a part of the platform failed");
                self.shutdown.cancel();
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        self.traces.shutdown().await;
        result
    }

    /// Stops every part and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Uploads the example package and creates its handler through the API, once per data
/// directory.
/// The name of the token `dev` makes for the local admin at each start (the previous one is
/// revoked).
const DEV_TOKEN_NAME: &str = "ferrisfx dev";

/// With authentication on, `dev` needs no setup: the first start makes user `admin` with a
/// random password kept in `<data_dir>/admin-password` (readable by its owner only), unless a
/// bootstrap password is set; every start makes an admin API token (revoking the one of the
/// previous start) for the CLI and the example's installation. `None` when the platform's
/// accounts have no `admin` (someone removed it): sign in as one of them.
async fn local_admin(settings: &Settings, backends: &Backends) -> anyhow::Result<Option<String>> {
    use fx_core::identity::credentials::Token;
    let mut auth = settings.server.auth.clone();
    if auth.bootstrap_password.is_none() && auth.bootstrap_password_file.is_none() {
        let file = settings.data_dir.join("admin-password");
        if !file.exists() {
            let password = Token::generate()?.reveal();
            let password = password.rsplit('_').next().unwrap_or_default()[..24].to_string();
            write_private(&file, &password)?;
        }
        auth.bootstrap_password_file = Some(file);
    }
    let identity = backends.identity.as_ref();
    management_server::auth::bootstrap(&auth, identity).await?;
    let admin = management_server::auth::BOOTSTRAP_ADMIN;
    if identity
        .account(admin)
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?
        .is_none()
    {
        tracing::warn!(
            account = admin,
            "no such account: the local admin token is not made"
        );
        return Ok(None);
    }
    let now = chrono::Utc::now();
    let old = identity
        .tokens(Some(admin))
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    for token in old
        .iter()
        .filter(|t| t.name == DEV_TOKEN_NAME && t.revoked_at.is_none())
    {
        identity
            .revoke_token(&token.id, now)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
    }
    let token = Token::generate()?;
    identity
        .create_token(&fx_core::identity::TokenRecord {
            id: token.id().to_string(),
            owner: admin.to_string(),
            name: DEV_TOKEN_NAME.into(),
            secret_hash: token.secret_hash(),
            scope: Default::default(),
            created_at: now,
            expires_at: Some(now + chrono::TimeDelta::days(30)),
            last_used_at: None,
            revoked_at: None,
        })
        .await
        .map_err(|e| anyhow::anyhow!(e.chain()))?;
    Ok(Some(token.reveal()))
}

/// Writes `text` to a file only its owner may read.
/// The keyring of `ferrisfx dev`: the settings' (`server.secrets`), else the one in
/// `<data_dir>/secrets.key`, made on first start.
fn dev_keyring(settings: &Settings) -> anyhow::Result<fx_core::secrets::Keyring> {
    if let Some(keyring) = settings.server.secrets.keyring()? {
        return Ok(keyring);
    }
    let file = settings.data_dir.join("secrets.key");
    if !file.exists() {
        let line = fx_core::secrets::Keyring::generate_line("dev1")?;
        write_private(&file, &format!("{line}\n"))?;
        tracing::info!(file = %file.display(), "made a keyring for platform secrets");
    }
    Ok(fx_core::secrets::Keyring::from_file(&file)?)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

async fn install_example(
    data_dir: &Path,
    addr: SocketAddr,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let marker = data_dir.join(".example-installed");
    if marker.exists() {
        return Ok(());
    }
    let base = format!("http://{addr}/api/v1");
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the local admin token")?;
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .context("building the http client")?;
    let response = http
        .post(format!("{base}/packages"))
        .header("content-type", "application/octet-stream")
        .header("x-fx-user", "ferrisfx-dev")
        .body(EXAMPLE_PACKAGE)
        .send()
        .await
        .context("uploading the example package")?;
    if !(response.status().is_success() || response.status() == reqwest::StatusCode::CONFLICT) {
        anyhow::bail!(
            "uploading the example package: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    let handler = serde_json::json!({
        "name": "hello",
        "description": "The example: greets whoever sends a com.example.hello event",
        "filter": {"exact": {"attribute": "type", "value": EXAMPLE_EVENT_TYPE}},
        "package": {"name": "hello", "version": "latest"},
    });
    let response = http
        .post(format!("{base}/handlers"))
        .json(&handler)
        .send()
        .await
        .context("creating the example handler")?;
    if !(response.status().is_success() || response.status() == reqwest::StatusCode::CONFLICT) {
        anyhow::bail!(
            "creating the example handler: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    std::fs::write(&marker, b"the example package and handler were installed\n")
        .with_context(|| format!("writing {}", marker.display()))?;
    tracing::info!(
        "example installed: try `ferrisfx emit --type {EXAMPLE_EVENT_TYPE} --data '{{\"name\":\"Ferris\"}}'`"
    );
    Ok(())
}

/// `ferrisfx dev`: runs until Ctrl-C or SIGTERM.
pub async fn run(args: SettingsArgs) -> anyhow::Result<()> {
    let settings = Settings::load(&args)?;
    let listener = TcpListener::bind(settings.listen).await.with_context(|| {
        format!(
            "listening on {} (is the port in use? pass --port)",
            settings.listen
        )
    })?;
    let shutdown = CancellationToken::new();
    let data_dir = settings.data_dir.clone();
    let platform = Platform::start(settings, listener, shutdown.clone()).await?;
    if let Some(token) = &platform.admin_token {
        // The CLI on this machine uses it for this server, as after `ferrisfx login`.
        let server = format!("http://{}", platform.addr);
        match crate::login::remember(&server, token) {
            Ok(file) => tracing::info!(
                url = %server,
                password_file = %data_dir.join("admin-password").display(),
                cli_token_file = %file.display(),
                "authentication is on: sign in to the web UI as admin with the password in the password file; the CLI is signed in"
            ),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "keeping the local admin token for the CLI failed: sign in with `ferrisfx login`")
            }
        }
    }
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stopper.cancel();
    });
    platform.wait().await
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
