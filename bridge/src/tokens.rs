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

/// A new unique id with a readable prefix, e.g. `ses_01a233ae3b78Xq…`: the time of its making
/// (milliseconds since 1970, 12 hex digits) followed by 96 random bits.
///
/// Ids made later sort after those made earlier (the hex digits sort as their values, in SQLite's
/// byte order and in PostgreSQL's collations alike), so the database inserts new ids into the
/// last page of each index on them instead of a random page of the whole index: the writes of a
/// batch share their pages, and a commit writes a few pages instead of one per id (ids were 128
/// random bits before; both shapes are valid ids, see `validate::id_is_well_formed`).
pub fn new_id(prefix: &str) -> String {
    let millis = chrono::Utc::now().timestamp_millis().max(0);
    format!("{prefix}_{millis:012x}{}", random_text(12))
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

    #[test]
    fn ids_are_well_formed_unique_and_sort_in_the_order_they_were_made() {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.extend((0..1_000).map(|_| new_id("msg")));
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        for id in &ids {
            assert!(crate::validate::id_is_well_formed("msg", id), "{id}");
            assert_eq!(id.len(), "msg_".len() + 12 + 16, "{id}");
        }
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        // Made milliseconds apart, they sort by time whatever their random part.
        let (first, last) = (&ids[..1_000], &ids[2_000..]);
        assert!(first.iter().max() < last.iter().min());
        let millis = i64::from_str_radix(&ids[0]["msg_".len()..][..12], 16).unwrap();
        assert!((chrono::Utc::now().timestamp_millis() - millis).abs() < 60_000);
    }
}
