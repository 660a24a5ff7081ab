//! Preview tokens: short-lived, signed permissions to load and chat with one interface even while
//! it is a draft, so admins can try a change before visitors see it.
//!
//! A token is `alk_p_<expires_ms>_<signature>`, the signature an HMAC-SHA256 over the slug and
//! the expiry. The signing key is a random secret kept in the database (`settings`), so every
//! replica on the same database accepts the tokens any of them issued, and restarts keep them
//! valid until they expire.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Store, StoreError};
use crate::tokens::new_secret;

/// How long a preview token works.
pub const PREVIEW_TTL_MS: i64 = 15 * 60 * 1000;

const TOKEN_PREFIX: &str = "alk_p_";
const SECRET_SETTING: &str = "preview_token_secret";

/// A token that lets its holder preview `slug` until `now + PREVIEW_TTL_MS`; returns the token
/// and its expiry (epoch ms).
pub async fn issue(store: &Store, slug: &str, now: i64) -> Result<(String, i64), StoreError> {
    let key = signing_key(store).await?;
    let expires_at = now + PREVIEW_TTL_MS;
    let signature = URL_SAFE_NO_PAD.encode(sign(&key, slug, expires_at));
    Ok((
        format!("{TOKEN_PREFIX}{expires_at}_{signature}"),
        expires_at,
    ))
}

/// Whether `token` was issued for `slug` by a bridge on this database and has not expired.
pub async fn verify(store: &Store, token: &str, slug: &str, now: i64) -> Result<bool, StoreError> {
    let Some((expires_at, signature)) = token
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|rest| rest.split_once('_'))
    else {
        return Ok(false);
    };
    let Ok(expires_at) = expires_at.parse::<i64>() else {
        return Ok(false);
    };
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return Ok(false);
    };
    if expires_at <= now {
        return Ok(false);
    }
    let key = signing_key(store).await?;
    Ok(sign(&key, slug, expires_at).ct_eq(&signature).into())
}

async fn signing_key(store: &Store) -> Result<String, StoreError> {
    store
        .setting_or_insert(SECRET_SETTING, || new_secret("preview"))
        .await
}

fn sign(key: &str, slug: &str, expires_at: i64) -> [u8; 32] {
    hmac_sha256(
        key.as_bytes(),
        format!("preview\n{slug}\n{expires_at}").as_bytes(),
    )
}

/// HMAC-SHA256 (RFC 2104), built on the `sha2` the bridge already uses.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hmac_matches_rfc_4231() {
        let hex =
            |bytes: [u8; 32]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
        assert_eq!(
            hex(super::hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex(super::hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
