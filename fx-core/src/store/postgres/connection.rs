//! Settings, the connection pool and the error mapping that the PostgreSQL state store and the
//! PostgreSQL log sink share.
//!
//! The connection string is a secret: it is redacted in `Debug` and never logged; messages name
//! the database as `host:port/database` only.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use crate::error::{Error, ErrorKind, Result};

/// A PostgreSQL database (state store or log sink).
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// Connection string, `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (or the `key=value`
    /// form). A secret: redacted in `Debug` and never logged. TLS is set by `tls_mode` and
    /// `ca_file`, not by `sslmode` in the string.
    #[schemars(extend("writeOnly" = true))]
    pub url: String,
    /// TLS to the server, as libpq's `sslmode`: `disable` (no TLS), `require` (TLS, the
    /// server's certificate not checked) or `verify-full` (TLS, the certificate checked
    /// against `ca_file` and the host name of the connection string).
    #[serde(default)]
    pub tls_mode: PgTlsMode,
    /// PEM file of the certificate authorities that sign the server's certificate (needed
    /// with `verify-full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Connections kept in the pool (at least 1).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Schema holding the tables, created at open if missing (lowercase letters, digits and
    /// `_`, starting with a letter or `_`, at most 63 characters).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// How long to wait for a connection, in milliseconds: to open a new one, or for a free one
    /// when the pool is busy. Past it the operation fails as unavailable.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

/// TLS to PostgreSQL, named as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PgTlsMode {
    /// No TLS.
    #[default]
    Disable,
    /// TLS; the server's certificate is not checked (protects against eavesdropping only).
    Require,
    /// TLS; the certificate is checked against `ca_file` and the host name.
    VerifyFull,
}

fn default_pool_size() -> usize {
    16
}

fn default_schema() -> String {
    "public".to_string()
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

impl PostgresSettings {
    /// Settings for `url` with every other field at its default.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresSettings {
            url: url.into(),
            tls_mode: PgTlsMode::Disable,
            ca_file: None,
            pool_size: default_pool_size(),
            schema: default_schema(),
            connect_timeout_ms: default_connect_timeout_ms(),
        }
    }

    /// The connect timeout as a duration.
    fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Checks the settings and parses the connection string.
    fn client_config(&self) -> Result<tokio_postgres::Config> {
        if self.pool_size == 0 {
            return Err(Error::invalid("postgresql pool_size must be at least 1"));
        }
        if self.connect_timeout_ms == 0 {
            return Err(Error::invalid(
                "postgresql connect_timeout_ms must be at least 1",
            ));
        }
        validate_schema(&self.schema)?;
        // The parse error never quotes the string, so it cannot leak the password.
        let mut config = tokio_postgres::Config::from_str(&self.url).map_err(|e| {
            Error::invalid("postgresql url is not a valid connection string").with_source(e)
        })?;
        if config.get_dbname().is_none() {
            return Err(Error::invalid("postgresql url names no database"));
        }
        config.ssl_mode(match self.tls_mode {
            PgTlsMode::Disable => tokio_postgres::config::SslMode::Disable,
            PgTlsMode::Require | PgTlsMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
        let search_path = format!("-c search_path={}", self.schema);
        let options = match config.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {search_path}"),
            _ => search_path,
        };
        config
            .options(options)
            .connect_timeout(self.connect_timeout())
            .application_name("ferrisfx");
        Ok(config)
    }
}

impl fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let database = tokio_postgres::Config::from_str(&self.url)
            .map(|c| target(&c))
            .unwrap_or_else(|_| "<unparsable>".into());
        f.debug_struct("PostgresSettings")
            .field("url", &"<redacted>")
            .field("database", &database)
            .field("pool_size", &self.pool_size)
            .field("schema", &self.schema)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("tls_mode", &self.tls_mode)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

fn validate_schema(schema: &str) -> Result<()> {
    let mut chars = schema.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && schema.len() <= 63 {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "postgresql schema {schema:?} must be 1 to 63 lowercase letters, digits or '_', not starting with a digit"
    )))
}

/// `host:port/database`, what messages and logs name instead of the connection string.
fn target(config: &tokio_postgres::Config) -> String {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => format!("{host}:{port}"),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(dir)) => format!("{}:{port}", dir.display()),
        None => format!("localhost:{port}"),
    };
    format!("{host}/{}", config.get_dbname().unwrap_or_default())
}

/// A pool of connections to one database and schema.
pub(crate) struct PgDatabase {
    pool: Pool,
    target: String,
    schema: String,
}

impl PgDatabase {
    /// Builds the pool and checks that a connection can be made (within the connect timeout).
    pub(crate) async fn connect(settings: &PostgresSettings) -> Result<Self> {
        let config = settings.client_config()?;
        let target = target(&config);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match super::tls::connector(settings)? {
            None => Manager::from_config(config, NoTls, manager_config),
            Some(tls) => Manager::from_config(config, tls, manager_config),
        };
        let timeout = Some(settings.connect_timeout());
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .build()
            .map_err(|e| Error::internal("building the postgresql pool").with_source(e))?;
        let db = PgDatabase {
            pool,
            target,
            schema: settings.schema.clone(),
        };
        drop(db.client().await?);
        Ok(db)
    }

    /// `host:port/database`.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// The schema holding the tables.
    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    /// A connection from the pool; `Unavailable` naming the database when none can be had.
    pub(crate) async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(|e| {
            let kind = match &e {
                PoolError::Backend(pg) => error_kind(pg),
                PoolError::Timeout(_) | PoolError::Closed => ErrorKind::Unavailable,
                PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => ErrorKind::Internal,
            };
            let message = match kind {
                ErrorKind::Unavailable => {
                    format!("postgresql at {} is unavailable", self.target)
                }
                _ => format!("connecting to postgresql at {}", self.target),
            };
            Error::new(kind, message).with_source(e)
        })
    }

    /// Wraps a PostgreSQL error with `what`, of the kind [`error_kind`] gives; an unavailable
    /// database is named in the message.
    pub(crate) fn error(
        &self,
        what: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> Error + '_ {
        let what = what.into();
        move |e| {
            let kind = error_kind(&e);
            let message = match kind {
                ErrorKind::Unavailable => {
                    format!("{what}: postgresql at {} is unavailable", self.target)
                }
                _ => what,
            };
            Error::new(kind, message).with_source(e)
        }
    }
}

/// Unique violations are `Conflict`; a missing referenced row `NotFound`; bad data `Invalid`;
/// a lost or refused connection, an overloaded or restarting server, a serialization failure or
/// deadlock `Unavailable` (retrying may work); everything else `Internal`.
pub(crate) fn error_kind(e: &tokio_postgres::Error) -> ErrorKind {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let class = &code.code()[..2];
        return match class {
            _ if *code == SqlState::UNIQUE_VIOLATION => ErrorKind::Conflict,
            _ if *code == SqlState::FOREIGN_KEY_VIOLATION => ErrorKind::NotFound,
            _ if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                ErrorKind::Unavailable
            }
            // Connection exception, insufficient resources, operator intervention (shutdown,
            // cannot connect now), system error.
            "08" | "53" | "57" | "58" => ErrorKind::Unavailable,
            // Data exception: a value the database refuses (a NUL in text, out of range).
            "22" => ErrorKind::Invalid,
            _ => ErrorKind::Internal,
        };
    }
    if e.is_closed() {
        return ErrorKind::Unavailable;
    }
    // tokio-postgres exposes no kind: transport failures are told apart by their text
    // ("error connecting to server", "error communicating with the server", "timeout waiting
    // for server", "authentication error", "error performing TLS handshake").
    let text = e.to_string().to_ascii_lowercase();
    let transport = [
        "error connecting",
        "error communicating",
        "timeout waiting",
        "authentication error",
        "error performing tls",
    ];
    if transport.iter().any(|t| text.starts_with(t)) {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Internal
    }
}

/// Test helpers: a fresh schema per test run, dropped at the end.
#[cfg(test)]
pub(crate) mod testing {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::PostgresSettings;
    use crate::testsupport::unique;

    /// Settings for a fresh schema of the test database, or `None` (skipped) without
    /// `FX_TEST_POSTGRES`.
    pub(crate) fn fresh_settings(test: &str) -> Option<PostgresSettings> {
        let url = crate::testenv::backend("FX_TEST_POSTGRES", test)?;
        // A schema name holds no '-'.
        let schema = unique("fx_test").replace('-', "_");
        Some(PostgresSettings {
            schema,
            ..PostgresSettings::new(url)
        })
    }

    /// A plain connection to the test database (no pool, default search path).
    pub(crate) async fn raw_client(settings: &PostgresSettings) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&settings.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    /// Drops the schema of `settings` and everything in it. `pg_trgm`, when the state store
    /// created it there (see `text_index`), moves to `public` first: dropped with the schema,
    /// it would take the other tests' text indexes with it.
    pub(crate) async fn drop_schema(settings: &PostgresSettings) {
        let client = raw_client(settings).await;
        let schema = &settings.schema;
        client
            .batch_execute(&format!(
                "DO $$ BEGIN
                     IF EXISTS (SELECT 1 FROM pg_extension e
                                JOIN pg_namespace n ON n.oid = e.extnamespace
                                WHERE e.extname = 'pg_trgm' AND n.nspname = '{schema}') THEN
                         ALTER EXTENSION pg_trgm SET SCHEMA public;
                     END IF;
                 END $$;
                 DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            ))
            .await
            .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_url_and_names_the_database() {
        let settings = PostgresSettings::new("postgres://fx:s3cret@db.example:6543/state");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("db.example:6543/state"), "{debug}");
    }

    #[test]
    fn settings_are_checked() {
        let ok = PostgresSettings::new("postgres://u:p@h/db");
        assert!(ok.client_config().is_ok());
        for bad in [
            PostgresSettings {
                schema: "Bad-Schema".into(),
                ..ok.clone()
            },
            PostgresSettings {
                schema: String::new(),
                ..ok.clone()
            },
            PostgresSettings {
                pool_size: 0,
                ..ok.clone()
            },
            PostgresSettings {
                connect_timeout_ms: 0,
                ..ok.clone()
            },
            PostgresSettings::new("postgres://u:s3cret@h"),
            PostgresSettings::new("postgres://u:s3cret@h:notaport/db"),
        ] {
            let err = bad.client_config().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{}", err.chain());
            assert!(!err.chain().contains("s3cret"), "{}", err.chain());
        }
    }

    #[test]
    fn settings_deserialize_with_defaults_and_refuse_unknown_fields() {
        let parsed: PostgresSettings = toml::from_str("url = \"postgres://h/db\"").unwrap();
        assert_eq!(parsed, PostgresSettings::new("postgres://h/db"));
        assert!(toml::from_str::<PostgresSettings>("url = \"x\"\npassword = \"y\"").is_err());
    }
}
