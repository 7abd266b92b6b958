//! Credentials: API tokens (random, shown once, stored as a SHA-256 of their secret part) and
//! passwords (Argon2id, PHC strings).
//!
//! A token reads `fxt_<id>_<secret>`: `id` (12 hex digits) finds the stored record, `secret`
//! (64 hex digits, 256 random bits) is checked against the stored hash in constant time. A
//! token has enough entropy that a fast hash is safe; a password does not, hence Argon2id.

use std::fmt;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// What every token starts with (so that secret scanners and people can tell one).
pub const TOKEN_PREFIX: &str = "fxt_";
/// Hex digits of a token id.
const ID_HEX: usize = 12;
/// Hex digits of a token secret.
const SECRET_HEX: usize = 64;
/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted, in bytes (Argon2 takes any length; this bounds the work).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Fills `buf` from the operating system's random source.
fn random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf)
        .map_err(|e| Error::internal(format!("reading the operating system's random source: {e}")))
}

/// A token as presented, split into its parts. Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    id: String,
    secret: String,
}

impl Token {
    /// A new random token.
    pub fn generate() -> Result<Self> {
        let mut id = [0u8; ID_HEX / 2];
        let mut secret = [0u8; SECRET_HEX / 2];
        random(&mut id)?;
        random(&mut secret)?;
        Ok(Token {
            id: hex::encode(id),
            secret: hex::encode(secret),
        })
    }

    /// Splits a presented token; `None` when it does not have the token's shape (then it is
    /// no token of ours, and no lookup is made).
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(TOKEN_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        (hex(id, ID_HEX) && hex(secret, SECRET_HEX)).then(|| Token {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// The public part, which finds the stored record.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The hash stored for this token.
    pub fn secret_hash(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }

    /// Whether `stored_hash` is this token's, in constant time.
    pub fn matches(&self, stored_hash: &str) -> bool {
        let ours = self.secret_hash();
        ours.len() == stored_hash.len() && bool::from(ours.as_bytes().ct_eq(stored_hash.as_bytes()))
    }

    /// The whole token, to show once to its owner.
    pub fn reveal(&self) -> String {
        format!("{TOKEN_PREFIX}{}_{}", self.id, self.secret)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({TOKEN_PREFIX}{}_<redacted>)", self.id)
    }
}

/// Checks a new password's length.
pub fn check_password(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(Error::invalid(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid(format!(
            "the password must have at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The Argon2id hash of `password` (a PHC string with its salt and parameters), after
/// [`check_password`].
pub fn hash_password(password: &str) -> Result<String> {
    check_password(password)?;
    let mut salt = [0u8; 16];
    random(&mut salt)?;
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::internal(format!("hashing a password: {e}")))
}

/// Whether `password` matches `hash` (a PHC string made by [`hash_password`]). A malformed
/// hash matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    password.len() <= MAX_PASSWORD_BYTES
        && Argon2::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_back_and_match_only_their_hash() {
        let token = Token::generate().unwrap();
        let shown = token.reveal();
        assert!(shown.starts_with("fxt_"), "{shown}");
        assert_eq!(shown.len(), 4 + ID_HEX + 1 + SECRET_HEX);
        let parsed = Token::parse(&shown).unwrap();
        assert_eq!(parsed, token);
        let stored = token.secret_hash();
        assert!(parsed.matches(&stored));
        let other = Token::generate().unwrap();
        assert_ne!(other.id(), token.id());
        assert!(!other.matches(&stored));
        assert!(!parsed.matches(""));
        assert!(
            !format!("{token:?}").contains(&token.secret),
            "Debug hides the secret"
        );
    }

    #[test]
    fn malformed_tokens_are_not_tokens() {
        let good = Token::generate().unwrap().reveal();
        for bad in [
            "",
            "fxt_",
            "Bearer x",
            &good.replace("fxt_", "fxx_"),
            &good.to_uppercase(),
            &good[..good.len() - 1],
            &format!("{good}0"),
            &good.replacen('_', "-", 2),
        ] {
            assert_eq!(Token::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("correct horse battery", "not a hash"));
        assert_ne!(
            hash,
            hash_password("correct horse battery").unwrap(),
            "salted"
        );
        assert!(hash_password("short").is_err());
        assert!(hash_password(&"x".repeat(2000)).is_err());
        assert!(!verify_password(&"x".repeat(2000), &hash));
    }
}
