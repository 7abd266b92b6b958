//! What a function is handed besides its event: the configuration values of its invocation,
//! and the values of the secrets its handler grants, from two sources, in this order:
//!
//! 1. The platform secrets of the executor's pool (written with `ferrisfx secret set`),
//!    delivered by a [`SecretDelivery`]: the management server over HTTP
//!    (`executor.platform_secrets`), or the vault in process (`ferrisfx dev`).
//! 2. The executor's secrets directory, `executor.secrets_dir`: a file per secret whose name is
//!    the secret's name and whose content (UTF-8, exactly as written, at most
//!    [`MAX_SECRET_BYTES`]) is its value, the layout of a Kubernetes Secret mounted as a volume.
//!    Names starting with `.` are skipped (the volume's own `..data` links).
//!
//! Each source is read again at most every [`REFRESH`], one reading at a time (invocations
//! arriving meanwhile wait for it and share it), and only when an invocation is granted a
//! secret; so a rotated secret reaches new invocations without a restart. When the platform
//! secrets cannot be fetched, the values of the last fetch that succeeded are kept; without
//! one, every granted secret answers why. Secret values never leave the executor: invocations
//! carry names only, values are held in [`SecretValue`]s (printed `***`), and neither logs nor
//! error messages carry them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fx_core::grants::Grants;
use fx_core::secrets::{SecretDelivery, SecretValue};
use tokio::sync::Mutex;

/// Bytes of one secret value.
pub const MAX_SECRET_BYTES: u64 = fx_core::secrets::MAX_SECRET_BYTES as u64;

/// How long a reading of a source of secrets is used before it is read again.
pub const REFRESH: Duration = Duration::from_secs(5);

/// What one invocation's function may read: configuration values, and per granted secret its
/// value or why the executor cannot give it. Its `Debug` shows secret names, never values.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FunctionGrants {
    /// Configuration keys and values.
    pub config: BTreeMap<String, String>,
    /// Granted secrets: the value, or why there is none.
    pub secrets: BTreeMap<String, Result<SecretValue, String>>,
    /// Hosts the function may send HTTP requests to (`host` or `host:port`).
    pub http_allow: std::collections::BTreeSet<String>,
}

impl FunctionGrants {
    /// Nothing granted, shared.
    pub fn none() -> Arc<FunctionGrants> {
        static NONE: OnceLock<Arc<FunctionGrants>> = OnceLock::new();
        NONE.get_or_init(Default::default).clone()
    }

    /// The answer to `config.secret(name)`: the value leaves its wrapper here, for the
    /// function only.
    pub fn secret(&self, name: &str) -> Result<String, String> {
        match self.secrets.get(name) {
            Some(Ok(value)) => Ok(value.expose().to_string()),
            Some(Err(why)) => Err(why.clone()),
            None => Err(format!(
                "secret {name:?} is not granted to this function: declare it in the package's fx.toml (`secrets`) and grant it on the handler (`secrets`)"
            )),
        }
    }
}

/// Secret values read from a directory.
type Values = HashMap<String, Result<SecretValue, String>>;

/// The values a delivery hands over.
type Delivered = BTreeMap<String, SecretValue>;

/// The executor's secrets: its pool's platform secrets, then a directory.
pub struct SecretStore {
    platform: Option<PlatformSecrets>,
    dir: Option<PathBuf>,
    /// How long a reading is used: [`REFRESH`] (shorter in tests).
    refresh: Duration,
    /// The last reading of `dir` and when it was made; locked while reading.
    read: Mutex<Option<(Instant, Arc<Values>)>>,
}

/// The platform secrets of one pool.
struct PlatformSecrets {
    pool: String,
    delivery: Arc<dyn SecretDelivery>,
    /// `delivery.describe()`, for messages.
    source: String,
    /// The last fetch; locked while fetching, so that there is one fetch at a time.
    fetched: Mutex<Option<Fetched>>,
}

/// What the fetches so far left.
struct Fetched {
    /// When the last fetch was tried.
    at: Instant,
    /// The values of the last fetch that succeeded or, when none has, why (to be read after
    /// "but "): the platform secrets as resolutions see them until the next fetch.
    values: Result<Arc<Delivered>, String>,
}

impl SecretStore {
    /// Secrets from `dir` only; none when `dir` is `None`.
    pub fn new(dir: Option<PathBuf>) -> Self {
        SecretStore {
            platform: None,
            dir,
            refresh: REFRESH,
            read: Mutex::new(None),
        }
    }

    /// Takes the platform secrets of `pool` from `delivery`, looked up before the directory.
    pub fn with_delivery(
        mut self,
        pool: impl Into<String>,
        delivery: Arc<dyn SecretDelivery>,
    ) -> Self {
        self.platform = Some(PlatformSecrets {
            pool: pool.into(),
            source: delivery.describe(),
            delivery,
            fetched: Mutex::new(None),
        });
        self
    }

    /// What a function with `grants` may read. When `grants` name a secret, fetches the
    /// platform secrets and reads the directory (on the blocking pool) if their last reading
    /// is older than [`REFRESH`].
    pub async fn resolve(&self, grants: &Grants) -> Arc<FunctionGrants> {
        if grants.is_empty() {
            return FunctionGrants::none();
        }
        let (platform, values) = if grants.secrets.is_empty() {
            (None, Arc::default())
        } else {
            tokio::join!(self.platform(), self.directory())
        };
        let secrets = grants
            .secrets
            .iter()
            .map(|name| {
                let from_platform = match &platform {
                    Some(Err(unfetched)) => {
                        Some(Err(format!("secret {name:?} is granted, but {unfetched}")))
                    }
                    Some(Ok(delivered)) => delivered.get(name).cloned().map(Ok),
                    None => None,
                };
                let value = from_platform
                    .or_else(|| values.get(name).cloned())
                    .unwrap_or_else(|| Err(self.missing(name)));
                (name.clone(), value)
            })
            .collect();
        Arc::new(FunctionGrants {
            config: grants.config.clone(),
            secrets,
            http_allow: grants.http_allow.clone(),
        })
    }

    /// Why granted secret `name` has no value when no source has it.
    fn missing(&self, name: &str) -> String {
        match (&self.platform, &self.dir) {
            (Some(p), Some(dir)) => format!(
                "secret {name:?} is granted, but neither the platform secrets of pool {} (from {}) nor the secrets directory {} has it",
                p.pool,
                p.source,
                dir.display()
            ),
            (Some(p), None) => format!(
                "secret {name:?} is granted, but the platform secrets of pool {} (from {}) do not have it, and this executor has no secrets directory (executor.secrets_dir)",
                p.pool, p.source
            ),
            (None, Some(dir)) => format!(
                "secret {name:?} is granted, but this executor takes no platform secrets (executor.platform_secrets) and has no file {name:?} in its secrets directory {}",
                dir.display()
            ),
            (None, None) => format!(
                "secret {name:?} is granted, but this executor has no source of secrets: set executor.platform_secrets (for secrets written with `ferrisfx secret set`) or executor.secrets_dir"
            ),
        }
    }

    /// The platform secrets (`None` when the executor takes none), fetched again when the
    /// last fetch is older than the refresh period. A failed fetch keeps the values of the
    /// last one that succeeded; without one, it gives why.
    async fn platform(&self) -> Option<Result<Arc<Delivered>, String>> {
        let platform = self.platform.as_ref()?;
        let mut fetched = platform.fetched.lock().await;
        if let Some(last) = fetched.as_ref() {
            if last.at.elapsed() < self.refresh {
                return Some(last.values.clone());
            }
        }
        let (pool, source) = (&platform.pool, &platform.source);
        let values = match platform.delivery.deliver(pool).await {
            Ok(values) => {
                tracing::debug!(pool = %pool, source = %source, secrets = values.len(), "platform secrets fetched");
                Ok(Arc::new(values))
            }
            Err(e) => match fetched.take().map(|last| last.values) {
                Some(Ok(good)) => {
                    tracing::warn!(pool = %pool, source = %source, error = %e.chain(), "cannot fetch the platform secrets; functions get the values of the last fetch");
                    Ok(good)
                }
                _ => {
                    tracing::warn!(pool = %pool, source = %source, error = %e.chain(), "cannot fetch the platform secrets; functions granted a secret get an error until a fetch succeeds");
                    Err(format!(
                        "the platform secrets of pool {pool} could not be fetched from {source}: {}",
                        e.chain()
                    ))
                }
            },
        };
        *fetched = Some(Fetched {
            at: Instant::now(),
            values: values.clone(),
        });
        Some(values)
    }

    /// The directory's secrets, read again when the last reading is older than the refresh
    /// period.
    async fn directory(&self) -> Arc<Values> {
        let Some(dir) = &self.dir else {
            return Arc::default();
        };
        let mut read = self.read.lock().await;
        if let Some((at, values)) = read.as_ref() {
            if at.elapsed() < self.refresh {
                return values.clone();
            }
        }
        let reading = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || read_dir(&dir)
        });
        let values = match reading.await {
            Ok(values) => Arc::new(values),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "reading the secrets directory failed; functions get no secrets from it");
                return Arc::default();
            }
        };
        *read = Some((Instant::now(), values.clone()));
        values
    }
}

/// Every secret file in `dir`. A directory that cannot be read gives none, with a warning.
fn read_dir(dir: &Path) -> Values {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read the secrets directory; functions get no secrets from it");
            return Values::new();
        }
    };
    let mut values = Values::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if fx_core::validate::validate_key("secret", &name).is_err() {
            continue;
        }
        // Through symbolic links (a Kubernetes secret volume links each key into `..data`).
        let path = entry.path();
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            _ => continue,
        }
        values.insert(name.clone(), read_secret(&path, &name));
    }
    tracing::debug!(dir = %dir.display(), secrets = values.len(), "secrets directory read");
    values
}

fn read_secret(path: &Path, name: &str) -> Result<SecretValue, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("secret {name:?} cannot be read: {e}"))?;
    if meta.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "secret {name:?} is {} bytes; at most {MAX_SECRET_BYTES}",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("secret {name:?} cannot be read: {e}"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("secret {name:?} is not UTF-8 text"))?;
    // The size was checked above; a file grown since is refused the same way.
    SecretValue::new(text).map_err(|e| format!("secret {name:?}: {}", e.message()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use fx_core::{Error, Result};

    use super::*;

    fn grants(config: &[(&str, &str)], secrets: &[&str]) -> Grants {
        Grants {
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            http_allow: Default::default(),
        }
    }

    impl SecretStore {
        /// Reads its sources again after `every` instead of [`REFRESH`].
        fn refreshing_every(mut self, every: Duration) -> Self {
            self.refresh = every;
            self
        }
    }

    /// A delivery that counts its calls, records the pools asked for, and fails while told to.
    #[derive(Default)]
    struct FakeDelivery {
        values: std::sync::Mutex<BTreeMap<String, String>>,
        failing: std::sync::Mutex<Option<String>>,
        calls: AtomicUsize,
        pools: std::sync::Mutex<Vec<String>>,
    }

    impl FakeDelivery {
        fn with(values: &[(&str, &str)]) -> Arc<Self> {
            let fake = FakeDelivery::default();
            *fake.values.lock().unwrap() = values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Arc::new(fake)
        }

        fn fail_with(&self, why: &str) {
            *self.failing.lock().unwrap() = Some(why.to_string());
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl SecretDelivery for FakeDelivery {
        async fn deliver(&self, pool: &str) -> Result<BTreeMap<String, SecretValue>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.pools.lock().unwrap().push(pool.to_string());
            // As long as a round trip, so that concurrent resolutions overlap.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(why) = self.failing.lock().unwrap().clone() {
                return Err(Error::unavailable(why));
            }
            let values = self.values.lock().unwrap().clone();
            values
                .into_iter()
                .map(|(k, v)| Ok((k, SecretValue::new(v)?)))
                .collect()
        }

        fn describe(&self) -> String {
            "the fake".into()
        }
    }

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in files {
            std::fs::write(dir.path().join(name), value).unwrap();
        }
        dir
    }

    #[tokio::test]
    async fn granted_secrets_are_read_from_the_directory_and_others_are_explained() {
        let dir = dir_with(&[("api-token", "s3cr3t"), ("other", "not granted")]);
        std::fs::write(dir.path().join("binary"), [0xff, 0xfe]).unwrap();
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        let store = SecretStore::new(Some(dir.path().to_path_buf()));
        let granted = store
            .resolve(&grants(
                &[("greeting", "Howdy")],
                &["api-token", "binary", "missing"],
            ))
            .await;
        assert_eq!(granted.config["greeting"], "Howdy");
        assert_eq!(granted.secret("api-token"), Ok("s3cr3t".to_string()));
        assert!(granted
            .secret("other")
            .unwrap_err()
            .contains("not granted to this function"));
        assert!(granted.secret("binary").unwrap_err().contains("not UTF-8"));
        let missing = granted.secret("missing").unwrap_err();
        assert!(
            missing.contains("no file \"missing\" in its secrets directory")
                && missing.contains("executor.platform_secrets"),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn without_a_source_a_granted_secret_says_how_to_configure_one() {
        let store = SecretStore::new(None);
        let granted = store.resolve(&grants(&[], &["api-token"])).await;
        let why = granted.secret("api-token").unwrap_err();
        assert!(
            why.contains("executor.secrets_dir") && why.contains("executor.platform_secrets"),
            "{why}"
        );
        assert!(Arc::ptr_eq(
            &store.resolve(&Grants::default()).await,
            &FunctionGrants::none()
        ));
    }

    #[tokio::test]
    async fn oversized_secrets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("big"),
            vec![b'x'; MAX_SECRET_BYTES as usize + 1],
        )
        .unwrap();
        let store = SecretStore::new(Some(dir.path().to_path_buf()));
        let granted = store.resolve(&grants(&[], &["big"])).await;
        assert!(granted.secret("big").unwrap_err().contains("at most"));
    }

    #[tokio::test]
    async fn a_platform_value_wins_over_the_directory_which_fills_in_what_the_platform_lacks() {
        let dir = dir_with(&[("db-password", "from-dir"), ("api-token", "dir-token")]);
        let fake = FakeDelivery::with(&[("db-password", "from-platform")]);
        let store =
            SecretStore::new(Some(dir.path().to_path_buf())).with_delivery("default", fake.clone());
        let granted = store
            .resolve(&grants(&[], &["db-password", "api-token", "missing"]))
            .await;
        assert_eq!(granted.secret("db-password"), Ok("from-platform".into()));
        assert_eq!(granted.secret("api-token"), Ok("dir-token".into()));
        let missing = granted.secret("missing").unwrap_err();
        assert_eq!(
            missing,
            format!(
                "secret \"missing\" is granted, but neither the platform secrets of pool default (from the fake) nor the secrets directory {} has it",
                dir.path().display()
            )
        );
    }

    #[tokio::test]
    async fn the_pool_is_asked_for_its_own_secrets_and_only_when_a_secret_is_granted() {
        let fake = FakeDelivery::with(&[("api-token", "t")]);
        let store = SecretStore::new(None).with_delivery("gpu", fake.clone());
        store.resolve(&grants(&[("mode", "fast")], &[])).await;
        assert_eq!(fake.calls(), 0, "no secret granted, nothing fetched");
        let granted = store.resolve(&grants(&[], &["api-token", "other"])).await;
        assert_eq!(granted.secret("api-token"), Ok("t".into()));
        assert_eq!(*fake.pools.lock().unwrap(), ["gpu"]);
        let other = granted.secret("other").unwrap_err();
        assert!(
            other.contains("platform secrets of pool gpu (from the fake) do not have it")
                && other.contains("no secrets directory"),
            "{other}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_resolutions_share_one_fetch_per_refresh_period() {
        let fake = FakeDelivery::with(&[("api-token", "t")]);
        let store = Arc::new(SecretStore::new(None).with_delivery("default", fake.clone()));
        let mut resolving = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let store = store.clone();
            resolving.spawn(async move { store.resolve(&grants(&[], &["api-token"])).await });
        }
        while let Some(granted) = resolving.join_next().await {
            assert_eq!(granted.unwrap().secret("api-token"), Ok("t".into()));
        }
        for _ in 0..10 {
            store.resolve(&grants(&[], &["api-token"])).await;
        }
        assert_eq!(fake.calls(), 1);

        // Once the period is over, the next resolution fetches again.
        let store = SecretStore::new(None)
            .with_delivery("default", fake.clone())
            .refreshing_every(Duration::ZERO);
        store.resolve(&grants(&[], &["api-token"])).await;
        store.resolve(&grants(&[], &["api-token"])).await;
        assert_eq!(fake.calls(), 3);
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_the_values_of_the_last_good_one() {
        let fake = FakeDelivery::with(&[("api-token", "rotated-never")]);
        let dir = dir_with(&[("api-token", "from-dir")]);
        let store = SecretStore::new(Some(dir.path().to_path_buf()))
            .with_delivery("default", fake.clone())
            .refreshing_every(Duration::ZERO);
        let granted = store.resolve(&grants(&[], &["api-token"])).await;
        assert_eq!(granted.secret("api-token"), Ok("rotated-never".into()));
        fake.fail_with("connection refused");
        for _ in 0..2 {
            let granted = store.resolve(&grants(&[], &["api-token"])).await;
            assert_eq!(granted.secret("api-token"), Ok("rotated-never".into()));
        }
        assert_eq!(fake.calls(), 3, "each period tries again");
    }

    #[tokio::test]
    async fn without_a_good_fetch_a_granted_secret_says_why_the_platform_secrets_are_missing() {
        let fake = FakeDelivery::with(&[("api-token", "t")]);
        fake.fail_with("the management server at http://mgmt/ refused: 403 Forbidden");
        let dir = dir_with(&[("api-token", "from-dir")]);
        let store =
            SecretStore::new(Some(dir.path().to_path_buf())).with_delivery("default", fake.clone());
        let granted = store.resolve(&grants(&[], &["api-token"])).await;
        assert_eq!(
            granted.secret("api-token").unwrap_err(),
            "secret \"api-token\" is granted, but the platform secrets of pool default could not be fetched from the fake: the management server at http://mgmt/ refused: 403 Forbidden"
        );
        // The failure is kept for the period too: no fetch per invocation.
        store.resolve(&grants(&[], &["api-token"])).await;
        assert_eq!(fake.calls(), 1);
    }

    #[tokio::test]
    async fn values_never_show_in_debug() {
        let dir = dir_with(&[("api-token", "dir-hunter2")]);
        let fake = FakeDelivery::with(&[("db-password", "platform-hunter2")]);
        let store = SecretStore::new(Some(dir.path().to_path_buf())).with_delivery("default", fake);
        let granted = store
            .resolve(&grants(&[], &["api-token", "db-password"]))
            .await;
        assert_eq!(granted.secret("db-password"), Ok("platform-hunter2".into()));
        assert_eq!(granted.secret("api-token"), Ok("dir-hunter2".into()));
        let shown = format!("{granted:?} {granted:#?}");
        assert!(
            shown.contains("api-token") && shown.contains("db-password"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
