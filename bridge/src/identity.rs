//! Signed visitor identity: the host site signs a short-lived JWT for its signed-in user, the
//! widget hands it over when it opens a session, and the bridge verifies it here against the
//! interface's [`IdentityVerification`] settings.
//!
//! `jsonwebtoken` checks the signature and the algorithm; the claims are checked here against
//! the bridge's own clock (so tests move time with the manual clock): `exp` is required and
//! enforced, `nbf` when present, both with [`LEEWAY_SECS`] of clock skew; `iss` and `aud` when the
//! interface names them; `sub` is required and becomes the user id. `name` and `email` are
//! optional and clipped. Each refusal says why, in words a site developer can act on.

use std::collections::HashSet;

use airlock_shared::admin::{IdentityVerification, VisitorIdentity};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Clock skew tolerated between the host site and the bridge, for `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 30;
/// Longest `sub` accepted (a user id, not a document).
pub const MAX_USER_ID_CHARS: usize = 256;
/// Longest `name` kept; a longer one is cut.
const MAX_NAME_CHARS: usize = 200;
/// Longest `email` kept; a longer one is cut.
const MAX_EMAIL_CHARS: usize = 320;
/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// Why an identity token was refused. The messages are shown to the visitor's browser (and so to
/// the site's developer), never containing the token or the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("The identity token is malformed: {0}.")]
    Malformed(String),
    #[error("The identity token's signature does not match this chat's key.")]
    BadSignature,
    #[error("The identity token is signed with {found}; this chat expects {expected}.")]
    WrongAlgorithm { found: String, expected: String },
    #[error("The identity token has no `exp`: tokens must say when they expire.")]
    MissingExpiry,
    #[error("The identity token expired {0} s ago; the site must sign a fresh one.")]
    Expired(i64),
    #[error("The identity token is not valid yet (its `nbf` is {0} s from now).")]
    NotYetValid(i64),
    #[error("The identity token has no `sub` (the user's id on the site).")]
    MissingSubject,
    #[error("The identity token's `sub` is longer than {MAX_USER_ID_CHARS} characters.")]
    SubjectTooLong,
    #[error("The identity token's issuer (`iss`) is not the one this chat expects.")]
    WrongIssuer,
    #[error("The identity token's audience (`aud`) is not the one this chat expects.")]
    WrongAudience,
    /// The interface's own settings cannot be used (validation should have stopped this).
    #[error("this interface's identity settings are unusable: {0}")]
    Misconfigured(String),
}

/// Verifies `token` against `config` at `now_ms` (epoch milliseconds) and returns who it names.
pub fn verify(
    config: &IdentityVerification,
    token: &str,
    now_ms: i64,
) -> Result<VisitorIdentity, IdentityError> {
    let (algorithm, key) = decoding_key(config).map_err(IdentityError::Misconfigured)?;
    // The signature and the algorithm only: the claims are checked below, on the bridge's clock.
    let mut validation = Validation::new(algorithm);
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token.trim(), &key, &validation)
        .map_err(|err| refusal(err.into_kind(), token, algorithm))?
        .claims;

    let now = now_ms.div_euclid(1_000);
    let exp = number(&claims, "exp")?.ok_or(IdentityError::MissingExpiry)?;
    if now > exp + LEEWAY_SECS {
        return Err(IdentityError::Expired(now - exp));
    }
    if let Some(nbf) = number(&claims, "nbf")?
        && nbf > now + LEEWAY_SECS
    {
        return Err(IdentityError::NotYetValid(nbf - now));
    }
    if let Some(issuer) = &config.issuer
        && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
    {
        return Err(IdentityError::WrongIssuer);
    }
    if let Some(audience) = &config.audience {
        let matches = match claims.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !matches {
            return Err(IdentityError::WrongAudience);
        }
    }
    let user_id = match claims.get("sub") {
        Some(Value::String(sub)) => sub.trim().to_string(),
        // Numeric user ids are common; they read the same as text.
        Some(Value::Number(sub)) => sub.to_string(),
        _ => String::new(),
    };
    if user_id.is_empty() {
        return Err(IdentityError::MissingSubject);
    }
    if user_id.chars().count() > MAX_USER_ID_CHARS {
        return Err(IdentityError::SubjectTooLong);
    }
    Ok(VisitorIdentity {
        user_id,
        name: text_claim(&claims, "name", MAX_NAME_CHARS),
        email: text_claim(&claims, "email", MAX_EMAIL_CHARS),
    })
}

/// The algorithm and key an interface's settings name.
fn decoding_key(config: &IdentityVerification) -> Result<(Algorithm, DecodingKey), String> {
    match config.algorithm.as_str() {
        "HS256" => {
            let secret = config.secret.as_deref().unwrap_or("");
            if secret.len() < MIN_SECRET_BYTES {
                return Err("no HS256 secret of at least 32 bytes is stored".into());
            }
            Ok((
                Algorithm::HS256,
                DecodingKey::from_secret(secret.as_bytes()),
            ))
        }
        "RS256" => {
            let pem = config.public_key.as_deref().unwrap_or("");
            Ok((Algorithm::RS256, rsa_public_key(pem)?))
        }
        other => Err(format!("unknown algorithm `{other}`")),
    }
}

/// An RSA public key from PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`); private keys are refused so a
/// pasted private key is never kept.
pub(crate) fn rsa_public_key(pem: &str) -> Result<DecodingKey, String> {
    if pem.contains("PRIVATE KEY") {
        return Err("this is a private key: paste the site's public key (PEM) instead".into());
    }
    if !pem.contains("-----BEGIN") {
        return Err("paste the public key as PEM, from -----BEGIN PUBLIC KEY----- on".into());
    }
    DecodingKey::from_rsa_pem(pem.trim().as_bytes())
        .map_err(|_| "not an RSA public key in PEM format".to_string())
}

/// The refusal for a failed decode.
fn refusal(kind: ErrorKind, token: &str, expected: Algorithm) -> IdentityError {
    match kind {
        ErrorKind::InvalidSignature => IdentityError::BadSignature,
        ErrorKind::InvalidAlgorithm => IdentityError::WrongAlgorithm {
            found: jsonwebtoken::decode_header(token.trim())
                .map(|h| format!("{:?}", h.alg))
                .unwrap_or_else(|_| "another algorithm".into()),
            expected: format!("{expected:?}"),
        },
        ErrorKind::InvalidToken => {
            IdentityError::Malformed("a JWT has three dot-separated base64url parts".into())
        }
        ErrorKind::Base64(_) => IdentityError::Malformed("a part is not base64url".into()),
        ErrorKind::Utf8(_) => IdentityError::Malformed("a part is not UTF-8".into()),
        ErrorKind::Json(err) => IdentityError::Malformed(format!("not a JSON object ({err})")),
        other => IdentityError::Malformed(format!("{other:?}")),
    }
}

/// A NumericDate claim (seconds, possibly fractional) as whole seconds; a non-number is malformed.
fn number(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, IdentityError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.floor() as i64))
            .map(Some)
            .ok_or_else(|| IdentityError::Malformed(format!("`{name}` is not a time"))),
        Some(_) => Err(IdentityError::Malformed(format!(
            "`{name}` must be a number of seconds since 1970"
        ))),
    }
}

/// An optional text claim, trimmed and cut to `max` characters; other types are ignored.
fn text_claim(claims: &Map<String, Value>, name: &str, max: usize) -> Option<String> {
    let text = claims.get(name)?.as_str()?.trim();
    (!text.is_empty()).then(|| text.chars().take(max).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
    const NOW_MS: i64 = 1_800_000_000_000;
    const NOW: i64 = NOW_MS / 1_000;

    fn hs256() -> IdentityVerification {
        IdentityVerification {
            algorithm: "HS256".into(),
            secret: Some(SECRET.into()),
            ..Default::default()
        }
    }

    fn sign(claims: Value) -> String {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    #[test]
    fn a_valid_token_names_the_user() {
        let token = sign(
            json!({"sub": "u-1", "name": " Ada ", "email": "ada@example.com",
                                "exp": NOW + 60}),
        );
        let who = verify(&hs256(), &token, NOW_MS).unwrap();
        assert_eq!(who.user_id, "u-1");
        assert_eq!(who.name.as_deref(), Some("Ada"));
        assert_eq!(who.email.as_deref(), Some("ada@example.com"));
        let numeric = sign(json!({"sub": 42, "exp": NOW + 60}));
        assert_eq!(verify(&hs256(), &numeric, NOW_MS).unwrap().user_id, "42");
    }

    #[test]
    fn time_claims_allow_thirty_seconds_of_skew_and_no_more() {
        let at = |exp: i64| verify(&hs256(), &sign(json!({"sub": "u", "exp": exp})), NOW_MS);
        assert!(at(NOW - 30).is_ok());
        assert_eq!(at(NOW - 31), Err(IdentityError::Expired(31)));
        let nbf = |nbf: i64| {
            let token = sign(json!({"sub": "u", "exp": NOW + 600, "nbf": nbf}));
            verify(&hs256(), &token, NOW_MS)
        };
        assert!(nbf(NOW + 30).is_ok());
        assert_eq!(nbf(NOW + 31), Err(IdentityError::NotYetValid(31)));
        let no_exp = sign(json!({"sub": "u"}));
        assert_eq!(
            verify(&hs256(), &no_exp, NOW_MS),
            Err(IdentityError::MissingExpiry)
        );
    }

    #[test]
    fn each_refusal_says_why() {
        let other = EncodingKey::from_secret(b"another-secret-another-secret-another");
        let forged = jsonwebtoken::encode(
            &Header::default(),
            &json!({"sub": "u", "exp": NOW + 60}),
            &other,
        )
        .unwrap();
        assert_eq!(
            verify(&hs256(), &forged, NOW_MS),
            Err(IdentityError::BadSignature)
        );
        assert!(matches!(
            verify(&hs256(), "not-a-jwt", NOW_MS),
            Err(IdentityError::Malformed(_))
        ));
        let no_sub = sign(json!({"exp": NOW + 60, "name": "Ada"}));
        assert_eq!(
            verify(&hs256(), &no_sub, NOW_MS),
            Err(IdentityError::MissingSubject)
        );
        let long = sign(json!({"sub": "x".repeat(257), "exp": NOW + 60}));
        assert_eq!(
            verify(&hs256(), &long, NOW_MS),
            Err(IdentityError::SubjectTooLong)
        );
        let strict = IdentityVerification {
            issuer: Some("https://shop.example".into()),
            audience: Some("airlock".into()),
            ..hs256()
        };
        let good = sign(
            json!({"sub": "u", "exp": NOW + 60, "iss": "https://shop.example",
                               "aud": ["other", "airlock"]}),
        );
        assert!(verify(&strict, &good, NOW_MS).is_ok());
        let bad_iss = sign(
            json!({"sub": "u", "exp": NOW + 60, "iss": "https://evil.example",
                                  "aud": "airlock"}),
        );
        assert_eq!(
            verify(&strict, &bad_iss, NOW_MS),
            Err(IdentityError::WrongIssuer)
        );
        let bad_aud = sign(
            json!({"sub": "u", "exp": NOW + 60, "iss": "https://shop.example",
                                  "aud": "other"}),
        );
        assert_eq!(
            verify(&strict, &bad_aud, NOW_MS),
            Err(IdentityError::WrongAudience)
        );
    }
}
