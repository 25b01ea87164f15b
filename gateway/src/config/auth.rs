//! How agents authenticate to a PostgreSQL target: their own credentials relayed to the server
//! (`passthrough`), or an OIDC access token checked by the gateway, which then logs in with
//! credentials only it holds (`token`).

use crate::net::http::client::Endpoint;
use std::{net::IpAddr, path::PathBuf, time::Duration};

use toml::Spanned;

use super::{
    raw::{RawApprovals, RawTarget},
    validate::{absolute, issue, Issue},
};

const DEFAULT_LEEWAY_S: u64 = 30;
const MAX_LEEWAY_S: u64 = 300;
/// The PEM bundle that verifies the identity provider's certificate unless one is named.
pub const DEFAULT_JWKS_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Tokens naming unknown keys are attacker-controlled: each may trigger a fetch at most this often.
const DEFAULT_MIN_REFETCH_S: u64 = 10;
const MAX_MIN_REFETCH_S: u64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetAuth {
    Passthrough,
    Token(TokenAuth),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAuth {
    pub validation: TokenValidation,
    /// TOML file with `user` and `password` the gateway logs in with (mode 0600).
    pub credentials_file: PathBuf,
}

/// Where the signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    /// Boxed: most targets hold no URL, and `TargetAuth` stays small.
    Url(Box<JwksUrl>),
}

/// An identity provider's JWKS endpoint, split for a minimal HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksUrl {
    pub endpoint: Endpoint,
    /// Least time between two fetches caused by unknown keys or failed refreshes.
    pub min_refetch: Duration,
}

/// A URL the configuration checked, with the CA bundle that verifies it.
pub(super) fn endpoint(text: &str, parsed: ParsedUrl, ca_file: PathBuf) -> Endpoint {
    Endpoint {
        text: text.to_owned(),
        https: parsed.https,
        host: parsed.host,
        port: parsed.port,
        path: parsed.path,
        ca_file,
    }
}

pub fn target_auth(raw: &RawTarget, index: usize) -> Result<TargetAuth, Issue> {
    let field = |name: &str| format!("targets[{index}].{name}");
    let fields = TokenFields::of_target(raw);
    let mut token_fields = fields.given().to_vec();
    token_fields.push((
        "upstream_credentials_file",
        raw.upstream_credentials_file.as_ref().map(Spanned::span),
    ));
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
            let missing =
                |name: &str| issue(field("auth"), at, format!("auth = \"token\" needs {name}"));
            let validation = token_validation(&fields, &field, &missing)?;
            let credentials = (raw.upstream_credentials_file.as_ref())
                .ok_or_else(|| missing("upstream_credentials_file"))?;
            Ok(TargetAuth::Token(TokenAuth {
                validation,
                credentials_file: absolute(field("upstream_credentials_file"), credentials)?,
            }))
        }
        Some((at, other)) => Err(issue(
            field("auth"),
            at,
            format!("`{other}` is not one of: passthrough, token"),
        )),
    }
}

/// The `token_*` settings of a section that validates access tokens, whichever section it is.
pub(super) struct TokenFields<'a> {
    pub issuer: Option<&'a Spanned<String>>,
    pub audience: Option<&'a Spanned<String>>,
    pub jwks_file: Option<&'a Spanned<String>>,
    pub jwks_url: Option<&'a Spanned<String>>,
    pub jwks_ca_file: Option<&'a Spanned<String>>,
    pub jwks_min_refetch_s: Option<&'a Spanned<u64>>,
    pub required_claims: Option<&'a Spanned<Vec<Spanned<String>>>>,
    pub groups_claim: Option<&'a Spanned<String>>,
    pub leeway_s: Option<&'a Spanned<u64>>,
}

/// Every section spells its token settings alike (`token_issuer`, ...).
macro_rules! token_fields_of {
    ($raw:expr) => {
        TokenFields {
            issuer: $raw.token_issuer.as_ref(),
            audience: $raw.token_audience.as_ref(),
            jwks_file: $raw.token_jwks_file.as_ref(),
            jwks_url: $raw.token_jwks_url.as_ref(),
            jwks_ca_file: $raw.token_jwks_ca_file.as_ref(),
            jwks_min_refetch_s: $raw.token_jwks_min_refetch_s.as_ref(),
            required_claims: $raw.token_required_claims.as_ref(),
            groups_claim: $raw.token_groups_claim.as_ref(),
            leeway_s: $raw.token_leeway_s.as_ref(),
        }
    };
}

impl<'a> TokenFields<'a> {
    pub fn of_target(raw: &'a RawTarget) -> Self {
        token_fields_of!(raw)
    }

    pub fn of_approvals(raw: &'a RawApprovals) -> Self {
        token_fields_of!(raw)
    }

    /// Where each given setting is, by name (for "is only used with ..." errors).
    pub fn given(&self) -> [(&'static str, Option<std::ops::Range<usize>>); 9] {
        [
            ("token_issuer", self.issuer.map(Spanned::span)),
            ("token_audience", self.audience.map(Spanned::span)),
            ("token_jwks_file", self.jwks_file.map(Spanned::span)),
            ("token_jwks_url", self.jwks_url.map(Spanned::span)),
            ("token_jwks_ca_file", self.jwks_ca_file.map(Spanned::span)),
            (
                "token_jwks_min_refetch_s",
                self.jwks_min_refetch_s.map(Spanned::span),
            ),
            (
                "token_required_claims",
                self.required_claims.map(Spanned::span),
            ),
            ("token_groups_claim", self.groups_claim.map(Spanned::span)),
            ("token_leeway_s", self.leeway_s.map(Spanned::span)),
        ]
    }
}

/// How tokens are validated, from a section's `token_*` settings. `field` names a setting as
/// errors show it; `missing` is the error for a setting that must be given.
pub(super) fn token_validation(
    fields: &TokenFields<'_>,
    field: &dyn Fn(&str) -> String,
    missing: &dyn Fn(&str) -> Issue,
) -> Result<TokenValidation, Issue> {
    let issuer = fields.issuer.ok_or_else(|| missing("token_issuer"))?;
    let audience = fields.audience.ok_or_else(|| missing("token_audience"))?;
    let jwks = jwks_source(fields, field, missing)?;
    let leeway = match fields.leeway_s {
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
    Ok(TokenValidation {
        issuer: issuer.get_ref().clone(),
        audience: audience.get_ref().clone(),
        jwks,
        required_claims: fields.required_claims.map_or_else(
            || vec!["sub".to_owned()],
            |claims| {
                claims
                    .get_ref()
                    .iter()
                    .map(|c| c.get_ref().clone())
                    .collect()
            },
        ),
        groups_claim: fields
            .groups_claim
            .map_or_else(|| "groups".to_owned(), |c| c.get_ref().clone()),
        leeway: Duration::from_secs(leeway),
    })
}

/// How a section validates access tokens (a target's agents, or `[approvals]`' approvers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenValidation {
    pub issuer: String,
    pub audience: String,
    pub jwks: JwksSource,
    /// Claims a token must carry besides `iss`, `aud` and `exp`.
    pub required_claims: Vec<String>,
    /// Claim holding the subject's groups (a string or a list of strings).
    pub groups_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Exactly one of `token_jwks_file` or `token_jwks_url`, and the URL-only settings only with a URL.
fn jwks_source(
    fields: &TokenFields<'_>,
    field: &dyn Fn(&str) -> String,
    missing: &dyn Fn(&str) -> Issue,
) -> Result<JwksSource, Issue> {
    let url = match (fields.jwks_file, fields.jwks_url) {
        (Some(_), Some(url)) => {
            return Err(issue(
                field("token_jwks_url"),
                url,
                "give token_jwks_file or token_jwks_url, not both",
            ))
        }
        (None, None) => return Err(missing("token_jwks_file or token_jwks_url")),
        (Some(file), None) => {
            let only_with_url = [
                ("token_jwks_ca_file", fields.jwks_ca_file.map(Spanned::span)),
                (
                    "token_jwks_min_refetch_s",
                    fields.jwks_min_refetch_s.map(Spanned::span),
                ),
            ];
            if let Some((name, Some(span))) = only_with_url.iter().find(|(_, s)| s.is_some()) {
                return Err(Issue {
                    field: field(name),
                    offset: span.start,
                    message: "is only used with token_jwks_url".into(),
                });
            }
            return absolute(field("token_jwks_file"), file).map(JwksSource::File);
        }
        (None, Some(url)) => url,
    };
    let parsed = parse_url(url.get_ref()).map_err(|m| issue(field("token_jwks_url"), url, m))?;
    if !parsed.https && !is_loopback(&parsed.host) {
        return Err(issue(
            field("token_jwks_url"),
            url,
            "http:// is only allowed to a loopback host (127.0.0.0/8, ::1, localhost); \
             use https:// so the signing keys cannot be swapped on the way",
        ));
    }
    let ca_file = https_ca_file(
        field("token_jwks_ca_file"),
        fields.jwks_ca_file,
        parsed.https,
        "token_jwks_url",
    )?;
    let min_refetch = match fields.jwks_min_refetch_s {
        Some(value) if !(1..=MAX_MIN_REFETCH_S).contains(value.get_ref()) => {
            return Err(issue(
                field("token_jwks_min_refetch_s"),
                value,
                format!("must be 1 to {MAX_MIN_REFETCH_S} seconds"),
            ))
        }
        Some(value) => *value.get_ref(),
        None => DEFAULT_MIN_REFETCH_S,
    };
    Ok(JwksSource::Url(Box::new(JwksUrl {
        endpoint: endpoint(url.get_ref(), parsed, ca_file),
        min_refetch: Duration::from_secs(min_refetch),
    })))
}

pub(super) struct ParsedUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// `http[s]://host[:port][/path][?query]`; a fragment is dropped. Deliberately narrow: no
/// credentials, no spaces, IPv6 only in brackets.
pub(super) fn parse_url(text: &str) -> Result<ParsedUrl, String> {
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let lower = text.to_ascii_lowercase();
    let (https, rest) = if lower.starts_with("https://") {
        (true, &text["https://".len()..])
    } else if lower.starts_with("http://") {
        (false, &text["http://".len()..])
    } else {
        return Err(format!(
            "`{text}` must start with https:// (or http:// to a loopback host)"
        ));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err("must not carry credentials (user@host)".into());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("has an unclosed `[` in its host")?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`[{host}]` is not an IPv6 address"));
        }
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or("has text after `]`")?),
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c))
    {
        return Err(format!("`{host}` is not a host name or IP address"));
    }
    let port = match port {
        None => {
            if https {
                443
            } else {
                80
            }
        }
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{port}` is not a port (1 to 65535)"))?,
    };
    let tail = tail.split('#').next().unwrap_or_default();
    let path = if tail.starts_with('/') {
        tail.to_owned()
    } else {
        format!("/{tail}")
    };
    Ok(ParsedUrl {
        https,
        host: host.to_owned(),
        port,
        path,
    })
}

/// Plain HTTP only where nobody else is on the path.
pub(super) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The CA bundle that checks an https:// URL's server (the system's by default); naming
/// one for a plain http:// URL is an error, as it would check nothing.
pub(super) fn https_ca_file(
    field: String,
    raw: Option<&Spanned<String>>,
    https: bool,
    url_field: &str,
) -> Result<PathBuf, Issue> {
    match raw {
        Some(ca) if !https => Err(issue(
            field,
            ca,
            format!("is only used with an https:// {url_field}"),
        )),
        Some(ca) => absolute(field, ca),
        None => Ok(PathBuf::from(DEFAULT_JWKS_CA_FILE)),
    }
}
