//! Random ids, secrets (keys and tokens) and their hashes.
//!
//! Secrets are 256-bit random values, shown once and stored only as SHA-256 hashes; a presented
//! secret is hashed and looked up (or compared in constant time against a configured hash).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

fn random_text(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    URL_SAFE_NO_PAD.encode(buf)
}

/// A new unique id with a readable prefix, e.g. `ses_…` (128 random bits).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_text(16))
}

/// A new secret with a readable prefix, e.g. `alk_c_…` (256 random bits).
pub fn new_secret(prefix: &str) -> String {
    format!("{prefix}_{}", random_text(32))
}

/// The stored form of a secret: hex SHA-256.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `expected_hash`, compared in constant time.
pub fn secret_matches(secret: &str, expected_hash: &str) -> bool {
    hash_secret(secret)
        .as_bytes()
        .ct_eq(expected_hash.as_bytes())
        .into()
}

/// Prefixes of each kind of secret, so a leaked string says what it is.
pub const CONNECTOR_KEY_PREFIX: &str = "alk_c";
pub const ADMIN_KEY_PREFIX: &str = "alk_a";
pub const SESSION_TOKEN_PREFIX: &str = "alk_s";
pub const RESUME_TOKEN_PREFIX: &str = "alk_r";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_hash_stably() {
        let a = new_secret(CONNECTOR_KEY_PREFIX);
        let b = new_secret(CONNECTOR_KEY_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with("alk_c_"));
        assert_eq!(a.len(), "alk_c_".len() + 43);
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_eq!(hash_secret(&a).len(), 64);
        // Lowercase hex of SHA-256, as every stored hash was written: they must keep matching.
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(secret_matches(&a, &hash_secret(&a)));
        assert!(!secret_matches(&b, &hash_secret(&a)));
    }
}
