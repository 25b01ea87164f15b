//! How agents authenticate to a PostgreSQL target: their own credentials relayed to the server
//! (`passthrough`), or an OIDC access token checked by the gateway, which then logs in with
//! credentials only it holds (`token`).

use std::{path::PathBuf, time::Duration};

use toml::Spanned;

use super::{
    raw::RawTarget,
    validate::{issue, Issue},
};

const DEFAULT_LEEWAY_S: u64 = 30;
const MAX_LEEWAY_S: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetAuth {
    Passthrough,
    Token(TokenAuth),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAuth {
    pub issuer: String,
    pub audience: String,
    pub jwks_file: PathBuf,
    /// Claims a token must carry besides `iss`, `aud` and `exp`.
    pub required_claims: Vec<String>,
    /// Claim holding the subject's groups (a string or a list of strings).
    pub groups_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// TOML file with `user` and `password` the gateway logs in with (mode 0600).
    pub credentials_file: PathBuf,
}

fn absolute(field: String, value: &Spanned<String>) -> Result<PathBuf, Issue> {
    if value.get_ref().starts_with('/') {
        Ok(PathBuf::from(value.get_ref()))
    } else {
        Err(issue(
            field,
            value,
            format!("`{}` must be an absolute path", value.get_ref()),
        ))
    }
}

pub fn target_auth(raw: &RawTarget, index: usize) -> Result<TargetAuth, Issue> {
    let field = |name: &str| format!("targets[{index}].{name}");
    let token_fields = [
        ("token_issuer", raw.token_issuer.as_ref().map(Spanned::span)),
        (
            "token_audience",
            raw.token_audience.as_ref().map(Spanned::span),
        ),
        (
            "token_jwks_file",
            raw.token_jwks_file.as_ref().map(Spanned::span),
        ),
        (
            "upstream_credentials_file",
            raw.upstream_credentials_file.as_ref().map(Spanned::span),
        ),
    ];
    let mode = raw
        .auth
        .as_ref()
        .map(|mode| (mode, mode.get_ref().as_str()));
    match mode {
        None | Some((_, "passthrough")) => {
            // Token settings on a passthrough target would silently do nothing.
            if let Some((name, Some(span))) = token_fields.iter().find(|(_, span)| span.is_some()) {
                return Err(Issue {
                    field: field(name),
                    offset: span.start,
                    message: "is only used with auth = \"token\"".into(),
                });
            }
            Ok(TargetAuth::Passthrough)
        }
        Some((at, "token")) => {
            let required = |name: &str, value: &Option<Spanned<String>>| {
                value.clone().ok_or_else(|| {
                    issue(field("auth"), at, format!("auth = \"token\" needs {name}"))
                })
            };
            let issuer = required("token_issuer", &raw.token_issuer)?;
            let audience = required("token_audience", &raw.token_audience)?;
            let jwks_file = required("token_jwks_file", &raw.token_jwks_file)?;
            let credentials =
                required("upstream_credentials_file", &raw.upstream_credentials_file)?;
            let leeway = match &raw.token_leeway_s {
                Some(value) if *value.get_ref() > MAX_LEEWAY_S => {
                    return Err(issue(
                        field("token_leeway_s"),
                        value,
                        format!("at most {MAX_LEEWAY_S} seconds"),
                    ))
                }
                Some(value) => *value.get_ref(),
                None => DEFAULT_LEEWAY_S,
            };
            Ok(TargetAuth::Token(TokenAuth {
                issuer: issuer.into_inner(),
                audience: audience.into_inner(),
                jwks_file: absolute(field("token_jwks_file"), &jwks_file)?,
                required_claims: raw.token_required_claims.as_ref().map_or_else(
                    || vec!["sub".to_owned()],
                    |claims| claims.iter().map(|c| c.get_ref().clone()).collect(),
                ),
                groups_claim: raw
                    .token_groups_claim
                    .as_ref()
                    .map_or_else(|| "groups".to_owned(), |c| c.get_ref().clone()),
                leeway: Duration::from_secs(leeway),
                credentials_file: absolute(field("upstream_credentials_file"), &credentials)?,
            }))
        }
        Some((at, other)) => Err(issue(
            field("auth"),
            at,
            format!("`{other}` is not one of: passthrough, token"),
        )),
    }
}
