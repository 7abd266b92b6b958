//! The keys that seal secrets at rest: AES-256-GCM (ring), each key named by an id.
//!
//! A keyring is text: one key per line, `<id>:<64 hex digits>` (32 random bytes), blank lines
//! and `#` comments ignored; it comes from a file (`server.secrets.key_file`) or an environment
//! variable (`FX_SECRETS_KEY` by default, keys separated by newlines, commas or spaces). The
//! first key seals; every key opens what it sealed. To rotate: put a new key first, restart the
//! servers, re-seal (`ferrisfx secret rekey`, or `POST /api/v1/secrets/rekey`), and drop the
//! old key once no secret names it (`ferrisfx secret list` shows each secret's key).
//!
//! A sealed value is a 12-byte random nonce followed by the ciphertext and its tag; the
//! secret's name is the associated data, so a sealed value moved to another name does not open.

use std::fmt;
use std::path::{Path, PathBuf};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretValue;
use crate::error::{Error, Result};

/// The environment variable a keyring is read from by default.
pub const DEFAULT_KEY_ENV: &str = "FX_SECRETS_KEY";

/// Where the management server finds the keys that seal platform secrets: the
/// `[server.secrets]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsSettings {
    /// A file holding the keyring: one `<id>:<64 hex digits>` key per line, the first one
    /// sealing (`ferrisfx secret keygen` prints a key). Keep it readable by the server only.
    /// When unset, the keyring is read from the variable named by `key_env`; when neither
    /// gives keys, the secrets API answers that secrets are not configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-default-doc" = "unset (`<data_dir>/secrets.key` in `ferrisfx dev`)"))]
    pub key_file: Option<PathBuf>,
    /// The environment variable holding the keyring when `key_file` is unset (keys separated
    /// by newlines, commas or spaces).
    pub key_env: String,
}

impl Default for SecretsSettings {
    fn default() -> Self {
        SecretsSettings {
            key_file: None,
            key_env: DEFAULT_KEY_ENV.into(),
        }
    }
}

impl SecretsSettings {
    /// The keyring these settings name; `None` when they name none.
    pub fn keyring(&self) -> Result<Option<Keyring>> {
        if let Some(file) = &self.key_file {
            return Keyring::from_file(file).map(Some);
        }
        match std::env::var(&self.key_env) {
            Ok(text) if !text.trim().is_empty() => Keyring::parse(&text)
                .map(Some)
                .map_err(|e| Error::invalid(format!("{}: {}", self.key_env, e.message()))),
            _ => Ok(None),
        }
    }
}

/// One key.
struct Key {
    id: String,
    key: LessSafeKey,
}

/// The keys: the first seals, all open.
pub struct Keyring {
    keys: Vec<Key>,
    random: SystemRandom,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("ids", &self.ids()).finish()
    }
}

const AAD_PREFIX: &[u8] = b"ferrisfx/secret/v1\0";

fn aad(name: &str) -> Vec<u8> {
    [AAD_PREFIX, name.as_bytes()].concat()
}

impl Keyring {
    /// Reads a keyring file.
    pub fn from_file(path: &Path) -> Result<Keyring> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(format!(
                "cannot read the secrets keyring {}: {e} (server.secrets.key_file)",
                path.display()
            ))
        })?;
        warn_if_shared(path);
        Keyring::parse(&text)
            .map_err(|e| Error::invalid(format!("{}: {}", path.display(), e.message())))
    }

    /// Parses keyring text: `<id>:<64 hex digits>` per line (or separated by commas or
    /// spaces); `#` starts a comment.
    pub fn parse(text: &str) -> Result<Keyring> {
        let mut keys: Vec<Key> = Vec::new();
        for entry in text
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default())
            .flat_map(|line| line.split([',', ' ', '\t']))
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
        {
            let (id, hex_key) = entry.split_once(':').ok_or_else(|| {
                Error::invalid(
                    "a keyring entry must be <id>:<64 hex digits> (`ferrisfx secret keygen` prints one)",
                )
            })?;
            validate_key_id(id)?;
            let bytes = hex::decode(hex_key).ok().filter(|b| b.len() == 32).ok_or_else(|| {
                Error::invalid(format!(
                    "key {id:?} must be 64 hex digits (32 bytes); `ferrisfx secret keygen` prints one"
                ))
            })?;
            if keys.iter().any(|k| k.id == id) {
                return Err(Error::invalid(format!("key id {id:?} appears twice")));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| Error::internal("cannot make an AES-256-GCM key"))?;
            keys.push(Key {
                id: id.to_string(),
                key: LessSafeKey::new(key),
            });
        }
        if keys.is_empty() {
            return Err(Error::invalid(
                "the keyring holds no key; `ferrisfx secret keygen` prints one",
            ));
        }
        Ok(Keyring {
            keys,
            random: SystemRandom::new(),
        })
    }

    /// A new random key as a keyring line, `<id>:<64 hex digits>`.
    pub fn generate_line(id: &str) -> Result<String> {
        validate_key_id(id)?;
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| Error::internal("the system's random source failed"))?;
        Ok(format!("{id}:{}", hex::encode(bytes.as_ref())))
    }

    /// The ids of the keys, the sealing one first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// The id of the key that seals.
    pub fn primary(&self) -> &str {
        &self.keys[0].id
    }

    /// Seals `value` of secret `name` with the first key: answers the key's id and the sealed
    /// bytes.
    pub fn seal(&self, name: &str, value: &SecretValue) -> Result<(String, Vec<u8>)> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| Error::internal("the system's random source failed"))?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + value.expose().len() + 16);
        sealed.extend_from_slice(&nonce);
        let mut body = value.expose().as_bytes().to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(name)),
                &mut body,
            )
            .map_err(|_| Error::internal(format!("cannot seal secret {name}")))?;
        sealed.extend_from_slice(&body);
        zeroize::Zeroize::zeroize(&mut body);
        Ok((key.id.clone(), sealed))
    }

    /// Opens the value of secret `name` sealed by key `key_id`.
    pub fn open(&self, name: &str, key_id: &str, sealed: &[u8]) -> Result<SecretValue> {
        let key = self.keys.iter().find(|k| k.id == key_id).ok_or_else(|| {
            Error::invalid(format!(
                "secret {name} is sealed with key {key_id:?}, which the keyring ({}) lacks: put that key back in the keyring",
                self.ids().join(", ")
            ))
        })?;
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(Error::internal(format!(
                "the stored value of secret {name} is truncated"
            )));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| Error::internal("a stored nonce has the wrong length"))?;
        let mut body = zeroize::Zeroizing::new(body.to_vec());
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(aad(name)), &mut body)
            .map_err(|_| {
                Error::internal(format!(
                    "secret {name} does not open with key {key_id:?}: the key is not the one that sealed it, or the stored value was altered"
                ))
            })?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| Error::internal(format!("secret {name} is not UTF-8 once opened")))?;
        SecretValue::new(text)
    }
}

fn validate_key_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 32
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "key id {id:?} must be 1 to 32 ASCII letters, digits, '-', '_' or '.'"
        )))
    }
}

/// Warns when a keyring file can be read by other users.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    "the secrets keyring can be read by other users: chmod 600 it"
                );
            }
        }
    }
}
