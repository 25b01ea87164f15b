//! A JWKS document read into the keys that can verify signatures, and the choice of key and
//! algorithms for one token.

use jsonwebtoken::{
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm},
    Algorithm,
};
use serde_json::Value;

use super::TokenError;

/// Keys that cannot verify signatures (unknown types, encryption-only) are skipped, so one
/// odd key in an identity provider's set does not disable the others.
pub(super) fn parse_keys(document: &[u8]) -> Result<Vec<Jwk>, String> {
    let value: Value = serde_json::from_slice(document).map_err(|e| format!("not JSON: {e}"))?;
    let entries = value
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no `keys` array")?;
    let keys: Vec<Jwk> = entries
        .iter()
        .filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok())
        .filter(|jwk| !algorithms_for(jwk).is_empty())
        // Encryption keys never verify signatures.
        .filter(|jwk| {
            !matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            )
        })
        .collect();
    if keys.is_empty() {
        return Err("no signature verification key (RSA, EC or OKP) in the set".into());
    }
    Ok(keys)
}

/// The key a token names; without a `kid` only a set of one key is unambiguous.
pub(super) fn find(keys: &[Jwk], kid: Option<&str>) -> Result<Option<Jwk>, TokenError> {
    match kid {
        Some(kid) => Ok(keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .cloned()),
        None if keys.len() == 1 => Ok(keys.first().cloned()),
        None if keys.is_empty() => Ok(None),
        None => Err(TokenError::NoKeyId),
    }
}

pub(super) fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The algorithms a key may verify: its `alg` if it names one, else those of its type.
pub(super) fn algorithms_for(jwk: &Jwk) -> Vec<Algorithm> {
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
