//! The settings of every `ferrisfx` process: a TOML file, then `FX_*` environment variables,
//! then flags. `dev` uses all of them; `gateway`, `executor`, `server` and `setup` the parts
//! they run.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use fx_core::backends::BackendSettings;
use fx_executor::ExecutorSettings;
use fx_gateway::GatewaySettings;
use management_server::ServerSettings;
use serde::{Deserialize, Serialize};

/// The settings flags of `ferrisfx dev`, `gateway`, `executor`, `server` and `setup`.
#[derive(Debug, clap::Args)]
pub struct SettingsArgs {
    /// A TOML settings file (see `infra/config/dev.toml`).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the settings file and `FX_DATA_DIR`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Port of the web UI and API (overrides the port of `listen`).
    #[arg(long, short)]
    pub port: Option<u16>,
}

/// Settings of a `ferrisfx` process: a TOML file, then `FX_*` environment variables (nested keys
/// joined by `__`, e.g. `FX_EXECUTOR__MAX_CONCURRENCY=8`), then flags.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the embedded backends keep their files (`handlers.json`, `packages/`,
    /// `state.sqlite`, `logs.sqlite`) and, by default, the executor its cache (`cache/`).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Address of the web UI and REST API.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Install the example package (`hello`) and its handler on the first start of a data
    /// directory.
    #[serde(default = "yes")]
    pub example: bool,
    /// Backends of every port (embedded by default).
    #[serde(default)]
    pub backends: BackendSettings,
    /// Gateway settings.
    #[serde(default)]
    pub gateway: GatewaySettings,
    /// Executor settings (its cache directory defaults to `<data_dir>/cache`).
    #[serde(default)]
    pub executor: ExecutorSettings,
    /// Management server settings.
    #[serde(default)]
    pub server: ServerSettings,
    /// The operations listener of `ferrisfx gateway|executor|server` (`/healthz`, `/readyz`).
    #[serde(default)]
    pub ops: crate::ops::OpsSettings,
    /// Traces: the OTLP exporter of spans and the link from an execution to its trace (see
    /// `docs/tracing.md`).
    #[serde(default)]
    pub telemetry: fx_core::trace::TelemetrySettings,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(".fx-data")
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn yes() -> bool {
    true
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: default_data_dir(),
            listen: default_listen(),
            example: true,
            backends: BackendSettings::default(),
            gateway: GatewaySettings::default(),
            executor: ExecutorSettings::default(),
            server: ServerSettings::default(),
            ops: crate::ops::OpsSettings::default(),
            telemetry: fx_core::trace::TelemetrySettings::default(),
        }
    }
}

impl Settings {
    /// Loads settings: defaults, the file, `FX_*` variables, then flags.
    pub fn load(args: &SettingsArgs) -> anyhow::Result<Self> {
        // Every field has a serde default; no serialized defaults layer, which would merge
        // the embedded backends' keys into a `kind = "kafka"` table.
        let mut figment = Figment::new();
        if let Some(path) = &args.config {
            if !path.exists() {
                anyhow::bail!("settings file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(
            Env::prefixed("FX_")
                // FX_SERVER, FX_LOG*, FX_TOKEN, FX_PASSWORD and FX_CONFIG_DIR belong to the CLI;
                // FX_SECRETS_KEY and FX_EXECUTOR_TOKEN are read where server.secrets.key_env
                // and executor.platform_secrets.token_env name them; FX_TEST_*, FX_BENCH_*,
                // FX_SOAK_* and FX_SKIP_LINT belong to the test command and benches.
                .filter(|key| {
                    let key = key.as_str().to_ascii_lowercase();
                    !(["test_", "bench_", "soak_"]
                        .iter()
                        .any(|prefix| key.starts_with(prefix))
                        || matches!(
                            key.as_str(),
                            "server"
                                | "log"
                                | "log_json"
                                | "skip_lint"
                                | "token"
                                | "password"
                                | "config_dir"
                                | "secrets_key"
                                | "executor_token"
                        ))
                })
                .split("__"),
        );
        let mut settings: Settings = figment.extract().context("reading settings")?;
        if let Some(dir) = &args.data_dir {
            settings.data_dir = dir.clone();
        }
        if let Some(port) = args.port {
            settings.listen.set_port(port);
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_settings_file_loads_and_matches_the_defaults() {
        let args = SettingsArgs {
            config: Some(PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../infra/config/dev.toml"
            ))),
            data_dir: None,
            port: Some(9999),
        };
        let settings = Settings::load(&args).unwrap();
        let defaults = Settings::default();
        assert_eq!(settings.data_dir, defaults.data_dir);
        assert_eq!(settings.backends, defaults.backends);
        assert_eq!(settings.gateway, defaults.gateway);
        assert_eq!(settings.server, defaults.server);
        assert_eq!(settings.listen.port(), 9999, "flags win over the file");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[executor]\nmax_concurency = 3\n").unwrap();
        let args = SettingsArgs {
            config: Some(path),
            data_dir: None,
            port: None,
        };
        let err = format!("{:#}", Settings::load(&args).unwrap_err());
        assert!(err.contains("max_concurency"), "{err}");
    }

    #[test]
    fn the_distributed_settings_file_selects_the_production_backends() {
        let args = SettingsArgs {
            config: Some(PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../infra/config/distributed.toml"
            ))),
            data_dir: None,
            port: None,
        };
        let settings = Settings::load(&args).unwrap();
        assert!(matches!(
            settings.backends.bus,
            fx_core::backends::BusSettings::Kafka(_)
        ));
        assert!(matches!(
            settings.backends.state,
            fx_core::backends::StateStoreSettings::Postgres(_)
        ));
        assert!(matches!(
            settings.backends.packages,
            fx_core::backends::PackageStoreSettings::S3(_)
        ));
    }
}
