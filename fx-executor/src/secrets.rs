//! What a function is handed besides its event: the configuration values of its invocation,
//! and the values of the secrets its handler grants, read from the executor's secrets
//! directory.
//!
//! A secret is a file in `executor.secrets_dir` whose name is the secret's name and whose
//! content (UTF-8, exactly as written, at most [`MAX_SECRET_BYTES`]) is its value: the layout of
//! a Kubernetes Secret mounted as a volume. Names starting with `.` are skipped (the volume's
//! own `..data` links). The directory is read again at most every [`REFRESH`], so a rotated
//! secret reaches new invocations without a restart. Secret values never leave the executor:
//! invocations carry names only, and values are never logged.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use fx_core::grants::Grants;

/// Bytes of one secret value.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// How long a reading of the secrets directory is used before it is read again.
pub const REFRESH: Duration = Duration::from_secs(5);

/// What one invocation's function may read: configuration values, and per granted secret its
/// value or why the executor cannot give it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FunctionGrants {
    /// Configuration keys and values.
    pub config: BTreeMap<String, String>,
    /// Granted secrets: the value, or why there is none.
    pub secrets: BTreeMap<String, Result<String, String>>,
    /// Hosts the function may send HTTP requests to (`host` or `host:port`).
    pub http_allow: std::collections::BTreeSet<String>,
}

impl FunctionGrants {
    /// Nothing granted, shared.
    pub fn none() -> Arc<FunctionGrants> {
        static NONE: OnceLock<Arc<FunctionGrants>> = OnceLock::new();
        NONE.get_or_init(Default::default).clone()
    }

    /// The answer to `config.secret(name)`.
    pub fn secret(&self, name: &str) -> Result<String, String> {
        match self.secrets.get(name) {
            Some(found) => found.clone(),
            None => Err(format!(
                "secret {name:?} is not granted to this function: declare it in the package's fx.toml (`secrets`) and grant it on the handler (`secrets`)"
            )),
        }
    }
}

/// Secret values read from a directory.
type Values = HashMap<String, Result<String, String>>;

/// The executor's secrets: a directory read at most every [`REFRESH`].
pub struct SecretStore {
    dir: Option<PathBuf>,
    read: Mutex<Option<(Instant, Arc<Values>)>>,
}

impl SecretStore {
    /// Secrets from `dir`; none when `dir` is `None`.
    pub fn new(dir: Option<PathBuf>) -> Self {
        SecretStore {
            dir,
            read: Mutex::new(None),
        }
    }

    /// What a function with `grants` may read. Blocking (it may read the directory): call it
    /// off the async workers.
    pub fn resolve(&self, grants: &Grants) -> Arc<FunctionGrants> {
        if grants.is_empty() {
            return FunctionGrants::none();
        }
        let values = if grants.secrets.is_empty() {
            Arc::default()
        } else {
            self.values()
        };
        let secrets = grants
            .secrets
            .iter()
            .map(|name| {
                let value = match (&self.dir, values.get(name)) {
                    (_, Some(value)) => value.clone(),
                    (None, None) => Err(format!(
                        "secret {name:?} is granted, but this executor has no secrets directory (set executor.secrets_dir)"
                    )),
                    (Some(dir), None) => Err(format!(
                        "secret {name:?} is granted, but this executor has no file {name:?} in its secrets directory {}",
                        dir.display()
                    )),
                };
                (name.clone(), value)
            })
            .collect();
        Arc::new(FunctionGrants {
            config: grants.config.clone(),
            secrets,
            http_allow: grants.http_allow.clone(),
        })
    }

    /// The directory's secrets, read again when the last reading is older than [`REFRESH`].
    fn values(&self) -> Arc<Values> {
        let Some(dir) = &self.dir else {
            return Arc::default();
        };
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, values)) = read.as_ref() {
            if at.elapsed() < REFRESH {
                return values.clone();
            }
        }
        let values = Arc::new(read_dir(dir));
        *read = Some((Instant::now(), values.clone()));
        values
    }
}

/// Every secret file in `dir`. A directory that cannot be read gives none, with a warning.
fn read_dir(dir: &Path) -> Values {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read the secrets directory; functions get no secrets");
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

fn read_secret(path: &Path, name: &str) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("secret {name:?} cannot be read: {e}"))?;
    if meta.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "secret {name:?} is {} bytes; at most {MAX_SECRET_BYTES}",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("secret {name:?} cannot be read: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("secret {name:?} is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn granted_secrets_are_read_from_the_directory_and_others_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api-token"), "s3cr3t").unwrap();
        std::fs::write(dir.path().join("other"), "not granted").unwrap();
        std::fs::write(dir.path().join("binary"), [0xff, 0xfe]).unwrap();
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        let store = SecretStore::new(Some(dir.path().to_path_buf()));
        let granted = store.resolve(&grants(
            &[("greeting", "Howdy")],
            &["api-token", "binary", "missing"],
        ));
        assert_eq!(granted.config["greeting"], "Howdy");
        assert_eq!(granted.secret("api-token"), Ok("s3cr3t".to_string()));
        assert!(granted
            .secret("other")
            .unwrap_err()
            .contains("not granted to this function"));
        assert!(granted.secret("binary").unwrap_err().contains("not UTF-8"));
        let missing = granted.secret("missing").unwrap_err();
        assert!(
            missing.contains("no file \"missing\" in its secrets directory"),
            "{missing}"
        );
    }

    #[test]
    fn without_a_directory_a_granted_secret_says_how_to_configure_one() {
        let store = SecretStore::new(None);
        let granted = store.resolve(&grants(&[], &["api-token"]));
        assert!(granted
            .secret("api-token")
            .unwrap_err()
            .contains("executor.secrets_dir"));
        assert!(Arc::ptr_eq(
            &store.resolve(&Grants::default()),
            &FunctionGrants::none()
        ));
    }

    #[test]
    fn oversized_secrets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("big"),
            vec![b'x'; MAX_SECRET_BYTES as usize + 1],
        )
        .unwrap();
        let store = SecretStore::new(Some(dir.path().to_path_buf()));
        let granted = store.resolve(&grants(&[], &["big"]));
        assert!(granted.secret("big").unwrap_err().contains("at most"));
    }
}
