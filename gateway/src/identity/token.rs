//! OIDC access tokens (JWT) presented as the password: signature checked against the
//! identity provider's keys (a JWKS file, or its JWKS URL with a cache), then `iss`, `aud`,
//! `exp`/`nbf` with leeway and the required claims. Only asymmetric algorithms are accepted,
//! and only the one the key is for.

mod file;
mod keys;
mod remote;

use std::path::PathBuf;

use jsonwebtoken::{decode, decode_header, errors::ErrorKind, jwk::Jwk, DecodingKey, Validation};
use serde_json::Value;

use crate::{
    config::{JwksSource, TokenValidation},
    net::http::client::HttpClient,
};
use file::FileKeys;
use keys::{algorithms_for, is_asymmetric};
use remote::{RemoteKeys, Timing};

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

enum KeySource {
    File(FileKeys),
    Url(RemoteKeys),
}

pub struct TokenValidator {
    settings: TokenValidation,
    keys: KeySource,
}

impl TokenValidator {
    /// A JWKS file is read now and a broken one stops startup with its field named. A URL is
    /// fetched in the background (its CA bundle is read now): an identity provider that is
    /// down must not stop the gateway, and tokens are refused until its keys arrive.
    /// `bypass_mark` keeps the gateway's own connection to the provider from being intercepted.
    /// `section` names the settings in errors: `targets[db]` or `approvals`.
    pub fn new(
        section: &str,
        settings: &TokenValidation,
        bypass_mark: u32,
    ) -> Result<Self, JwksError> {
        let field = |name: &str| format!("{section}.{name}");
        let keys = match &settings.jwks {
            JwksSource::File(path) => {
                let field = field("token_jwks_file");
                KeySource::File(FileKeys::open(path, field.clone()).map_err(|detail| {
                    JwksError {
                        field,
                        path: path.clone(),
                        detail,
                    }
                })?)
            }
            JwksSource::Url(url) => {
                let fetcher =
                    HttpClient::new(&url.endpoint, bypass_mark).map_err(|detail| JwksError {
                        field: field("token_jwks_ca_file"),
                        path: url.endpoint.ca_file.clone(),
                        detail,
                    })?;
                KeySource::Url(RemoteKeys::new(
                    Box::new(fetcher),
                    field("token_jwks_url"),
                    Timing::new(url.min_refetch),
                ))
            }
        };
        Ok(Self {
            settings: settings.clone(),
            keys,
        })
    }

    pub async fn validate(&self, token: &str) -> Result<TokenIdentity, TokenError> {
        let header = decode_header(token).map_err(|_| unaccepted_algorithm(token))?;
        if !is_asymmetric(header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let jwk = self.key_for(header.kid.as_deref()).await?;
        if !algorithms_for(&jwk).contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| TokenError::Keys(e.to_string()))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        // `sub` names who is behind the session in every record: always required.
        let mut required = vec!["exp", "iss", "aud", "sub"];
        required.extend(self.settings.required_claims.iter().map(String::as_str));
        validation.set_required_spec_claims(&required);
        let claims = decode::<Value>(token, &key, &validation)
            .map_err(|error| claim_error(error.into_kind()))?
            .claims;
        for claim in required.iter().skip(3) {
            if claims.get(*claim).is_none_or(Value::is_null) {
                return Err(TokenError::MissingClaim((*claim).to_owned()));
            }
        }
        if claims
            .get("sub")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(TokenError::MissingClaim("sub".to_owned()));
        }
        Ok(TokenIdentity {
            subject: text_claim(&claims, "sub"),
            groups: groups(&claims, &self.settings.groups_claim),
            issuer: text_claim(&claims, "iss"),
            key_id: header.kid,
            expires_at: claims.get("exp").and_then(Value::as_u64).unwrap_or(0),
        })
    }

    /// The key a token names; an unknown one re-reads the source (rate-limited) first.
    async fn key_for(&self, kid: Option<&str>) -> Result<Jwk, TokenError> {
        match &self.keys {
            KeySource::File(file) => file.key_for(kid),
            KeySource::Url(remote) => remote.key_for(kid).await,
        }
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
