//! OIDC access tokens (JWT) presented as the password: signature checked against the JWKS
//! file (re-read when a token names a key it does not hold, so rotated keys are picked up),
//! then `iss`, `aud`, `exp`/`nbf` with leeway and the required claims. Only asymmetric
//! algorithms are accepted, and only the one the key is for.

use std::{
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use jsonwebtoken::{
    decode, decode_header,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm},
    Algorithm, DecodingKey, Validation,
};
use serde_json::Value;

use crate::config::TokenAuth;

/// A token naming an unknown key re-reads the JWKS at most this often.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// What a valid token says about who is behind the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    pub subject: String,
    pub groups: Vec<String>,
    pub issuer: String,
    pub key_id: Option<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the password is not a JWT")]
    Malformed,
    #[error("algorithm {0} is not accepted (asymmetric signatures only)")]
    Algorithm(String),
    #[error("no key `{0}` in the JWKS")]
    UnknownKey(String),
    #[error("the token names no key (`kid`) and the JWKS holds several")]
    NoKeyId,
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("not valid yet (nbf)")]
    NotYetValid,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("missing claim `{0}`")]
    MissingClaim(String),
    #[error("JWKS unavailable: {0}")]
    Keys(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{field}: {path}: {detail}")]
pub struct JwksError {
    field: String,
    path: PathBuf,
    detail: String,
}

struct KeySet {
    keys: Vec<Jwk>,
    modified: Option<SystemTime>,
    checked: Instant,
}

pub struct TokenValidator {
    settings: TokenAuth,
    field: String,
    keys: Mutex<KeySet>,
}

impl TokenValidator {
    /// Reads the JWKS now, so a missing or broken file stops startup with its field named.
    pub fn new(target: &str, settings: &TokenAuth) -> Result<Self, JwksError> {
        let field = format!("targets[{target}].token_jwks_file");
        let keys = read_keys(&settings.jwks_file).map_err(|detail| JwksError {
            field: field.clone(),
            path: settings.jwks_file.clone(),
            detail,
        })?;
        Ok(Self {
            settings: settings.clone(),
            field,
            keys: Mutex::new(keys),
        })
    }

    pub fn validate(&self, token: &str) -> Result<TokenIdentity, TokenError> {
        let header = decode_header(token).map_err(|_| unaccepted_algorithm(token))?;
        if !is_asymmetric(header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let jwk = self.key_for(header.kid.as_deref())?;
        if !algorithms_for(&jwk).contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| TokenError::Keys(e.to_string()))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp", "iss", "aud"];
        required.extend(self.settings.required_claims.iter().map(String::as_str));
        validation.set_required_spec_claims(&required);
        let claims = decode::<Value>(token, &key, &validation)
            .map_err(|error| claim_error(error.into_kind()))?
            .claims;
        for claim in &self.settings.required_claims {
            if claims.get(claim).is_none_or(Value::is_null) {
                return Err(TokenError::MissingClaim(claim.clone()));
            }
        }
        Ok(TokenIdentity {
            subject: text_claim(&claims, "sub"),
            groups: groups(&claims, &self.settings.groups_claim),
            issuer: text_claim(&claims, "iss"),
            key_id: header.kid,
            expires_at: claims.get("exp").and_then(Value::as_u64).unwrap_or(0),
        })
    }

    /// The key a token names; an unknown one re-reads the file (rate-limited) first.
    fn key_for(&self, kid: Option<&str>) -> Result<Jwk, TokenError> {
        let mut set = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(jwk) = find(&set.keys, kid)? {
            return Ok(jwk);
        }
        if set.checked.elapsed() >= RELOAD_INTERVAL {
            set.checked = Instant::now();
            let modified = std::fs::metadata(&self.settings.jwks_file)
                .and_then(|m| m.modified())
                .ok();
            if modified != set.modified {
                match read_keys(&self.settings.jwks_file) {
                    Ok(fresh) => {
                        tracing::info!(jwks = %self.settings.jwks_file.display(), keys = fresh.keys.len(), "JWKS reloaded");
                        *set = fresh;
                    }
                    Err(detail) => {
                        tracing::warn!(field = %self.field, %detail, "JWKS reload failed; keeping the keys held");
                    }
                }
            }
        }
        find(&set.keys, kid)?.ok_or_else(|| TokenError::UnknownKey(kid.unwrap_or("").to_owned()))
    }
}

/// A header that did not parse: if it names an algorithm jsonwebtoken does not know (`none`
/// among them), say so; otherwise the token is malformed.
fn unaccepted_algorithm(token: &str) -> TokenError {
    token
        .split('.')
        .next()
        .and_then(base64_url_json)
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned))
        .map_or(TokenError::Malformed, TokenError::Algorithm)
}

fn base64_url_json(part: &str) -> Option<Value> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn find(keys: &[Jwk], kid: Option<&str>) -> Result<Option<Jwk>, TokenError> {
    match kid {
        Some(kid) => Ok(keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .cloned()),
        None if keys.len() == 1 => Ok(keys.first().cloned()),
        None => Err(TokenError::NoKeyId),
    }
}

/// Keys that cannot verify signatures (unknown types, encryption-only) are skipped, so one
/// odd key in an identity provider's set does not disable the others.
fn read_keys(path: &std::path::Path) -> Result<KeySet, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let entries = value
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no `keys` array")?;
    let keys: Vec<Jwk> = entries
        .iter()
        .filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok())
        .filter(|jwk| !algorithms_for(jwk).is_empty())
        .collect();
    if keys.is_empty() {
        return Err("no signature verification key (RSA, EC or OKP) in the set".into());
    }
    Ok(KeySet {
        keys,
        modified,
        checked: Instant::now(),
    })
}

fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The algorithms a key may verify: its `alg` if it names one, else those of its type.
fn algorithms_for(jwk: &Jwk) -> Vec<Algorithm> {
    use Algorithm as A;
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => {
            vec![A::RS256, A::RS384, A::RS512, A::PS256, A::PS384, A::PS512]
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![A::ES256],
            EllipticCurve::P384 => vec![A::ES384],
            _ => vec![],
        },
        AlgorithmParameters::OctetKeyPair(_) => vec![A::EdDSA],
        // Shared secrets are not public keys: never accepted from a JWKS.
        AlgorithmParameters::OctetKey(_) => vec![],
    };
    match jwk.common.key_algorithm {
        None => by_type,
        Some(named) => key_algorithm(named)
            .filter(|alg| by_type.contains(alg))
            .into_iter()
            .collect(),
    }
}

fn key_algorithm(named: KeyAlgorithm) -> Option<Algorithm> {
    use {Algorithm as A, KeyAlgorithm as K};
    Some(match named {
        K::RS256 => A::RS256,
        K::RS384 => A::RS384,
        K::RS512 => A::RS512,
        K::PS256 => A::PS256,
        K::PS384 => A::PS384,
        K::PS512 => A::PS512,
        K::ES256 => A::ES256,
        K::ES384 => A::ES384,
        K::EdDSA => A::EdDSA,
        _ => return None,
    })
}

fn claim_error(kind: ErrorKind) -> TokenError {
    match kind {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim),
        ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => TokenError::Signature,
        ErrorKind::InvalidAlgorithm => TokenError::Algorithm("mismatch".into()),
        _ => TokenError::Malformed,
    }
}

fn text_claim(claims: &Value, name: &str) -> String {
    claims
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn groups(claims: &Value, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::String(group)) => vec![group.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
