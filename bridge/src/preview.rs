//! Preview tokens: short-lived, signed permissions to load and chat with one interface even while
//! it is a draft, so admins can try a change before visitors see it.
//!
//! A token is `alk_p_<expires_ms>_<signature>`, the signature an HMAC-SHA256 over the slug and
//! the expiry. The signing key is a random secret kept in the database (`settings`), so every
//! replica on the same database accepts the tokens any of them issued, and restarts keep them
//! valid until they expire.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

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
    let signature = URL_SAFE_NO_PAD.encode(mac(&key, slug, expires_at).finalize().into_bytes());
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
    // `verify_slice` compares in constant time.
    Ok(mac(&key, slug, expires_at).verify_slice(&signature).is_ok())
}

async fn signing_key(store: &Store) -> Result<String, StoreError> {
    store
        .setting_or_insert(SECRET_SETTING, || new_secret("preview"))
        .await
}

/// The HMAC-SHA256 of the slug and the expiry under the bridge's preview key.
fn mac(key: &str, slug: &str, expires_at: i64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("preview\n{slug}\n{expires_at}").as_bytes());
    mac
}
