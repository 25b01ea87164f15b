//! The `[approvals]` section: who may approve a held request, how many must, and how long a
//! request waits when its rule names no timeout.

use std::{net::SocketAddr, time::Duration};

use toml::Spanned;

use super::{
    auth::{
        endpoint, https_ca_file, is_loopback, parse_url, token_validation, TokenFields,
        TokenValidation,
    },
    raw::RawApprovals,
    validate::{bounded, issue, Issue},
};
use crate::net::http::client::Endpoint;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// Local users (by name) who may approve over the admin socket.
    pub approver_users: Vec<String>,
    /// Members of these local groups may approve too.
    pub approver_groups: Vec<String>,
    /// Distinct approvers a request needs (2: a two-person rule).
    pub required: usize,
    /// How long a request waits, unless its rule says otherwise.
    pub timeout: Duration,
    /// Told (a JSON POST with a Slack-compatible `text`) when a request starts waiting.
    pub webhook: Option<Endpoint>,
    /// The HTTPS API and web page for approvers signing in with a token (off unless set).
    pub http: Option<HttpApprovals>,
}

/// Remote approvers: an HTTPS listener (with the certificate agents are shown), and who may
/// decide there: a valid token whose groups claim names one of `approver_groups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpApprovals {
    pub listen: SocketAddr,
    pub tokens: TokenValidation,
    pub approver_groups: Vec<String>,
}

const DEFAULT_TIMEOUT_S: u64 = 600;
/// A week.
const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;
const MAX_REQUIRED: u64 = 10;

pub fn settings(raw: Option<&Spanned<RawApprovals>>) -> Result<ApprovalSettings, Issue> {
    let default = RawApprovals::default();
    let raw = raw.map_or(&default, Spanned::get_ref);
    let timeout_s = bounded(
        "approvals.timeout_s",
        raw.timeout_s.as_ref(),
        DEFAULT_TIMEOUT_S,
        1..=MAX_TIMEOUT_S,
    )?;
    let required = bounded(
        "approvals.required",
        raw.required.as_ref(),
        1,
        1..=MAX_REQUIRED,
    )?;
    Ok(ApprovalSettings {
        approver_users: names("approvals.approver_users", raw.approver_users.as_ref())?,
        approver_groups: names("approvals.approver_groups", raw.approver_groups.as_ref())?,
        required: required as usize,
        timeout: Duration::from_secs(timeout_s),
        webhook: webhook(raw)?,
        http: http(raw)?,
    })
}

/// `http_listen` turns the API on, and then the token settings and the groups are required;
/// without it, any of them would silently do nothing, so each is refused.
fn http(raw: &RawApprovals) -> Result<Option<HttpApprovals>, Issue> {
    let field = |name: &str| format!("approvals.{name}");
    let fields = TokenFields::of_approvals(raw);
    let Some(listen) = &raw.http_listen else {
        let mut given = fields.given().to_vec();
        given.push((
            "approver_token_groups",
            raw.approver_token_groups.as_ref().map(Spanned::span),
        ));
        return match given.into_iter().find(|(_, span)| span.is_some()) {
            Some((name, Some(span))) => Err(Issue {
                field: field(name),
                offset: span.start,
                message: "is only used with approvals.http_listen".into(),
            }),
            _ => Ok(None),
        };
    };
    let address = listen.get_ref().parse::<SocketAddr>().map_err(|_| {
        issue(
            field("http_listen"),
            listen,
            format!(
                "`{}` is not an address and port (e.g. 127.0.0.1:9443 or [::]:9443)",
                listen.get_ref()
            ),
        )
    })?;
    let missing = |name: &str| {
        issue(
            field("http_listen"),
            listen,
            format!("the approvers' HTTPS API needs {name}: approvers sign in with a token"),
        )
    };
    let tokens = token_validation(&fields, &field, &missing)?;
    let groups = token_groups(raw.approver_token_groups.as_ref())?;
    if groups.is_empty() {
        return Err(missing(
            "approver_token_groups (the token groups whose members may decide)",
        ));
    }
    Ok(Some(HttpApprovals {
        listen: address,
        tokens,
        approver_groups: groups,
    }))
}

fn webhook(raw: &RawApprovals) -> Result<Option<Endpoint>, Issue> {
    let Some(url) = &raw.webhook_url else {
        return match &raw.webhook_ca_file {
            Some(ca) => Err(issue(
                "approvals.webhook_ca_file",
                ca,
                "is only used with a webhook_url",
            )),
            None => Ok(None),
        };
    };
    let field = "approvals.webhook_url";
    let parsed = parse_url(url.get_ref()).map_err(|m| issue(field, url, m))?;
    if !parsed.https && !is_loopback(&parsed.host) {
        return Err(issue(
            field,
            url,
            "http:// is only allowed to a loopback host; use https:// so what waits is not \
             announced in the clear",
        ));
    }
    let ca_file = https_ca_file(
        "approvals.webhook_ca_file".to_owned(),
        raw.webhook_ca_file.as_ref(),
        parsed.https,
        "webhook_url",
    )?;
    Ok(Some(endpoint(url.get_ref(), parsed, ca_file)))
}

/// User or group names as the system writes them (checked against the caller's uid and
/// groups when an approval arrives, so an account created later counts).
fn names(field: &str, raw: Option<&Spanned<Vec<Spanned<String>>>>) -> Result<Vec<String>, Issue> {
    let Some(list) = raw else {
        return Ok(Vec::new());
    };
    list.get_ref()
        .iter()
        .map(|name| {
            let text = name.get_ref();
            let valid = !text.is_empty()
                && text.len() <= 32
                && !text.starts_with('-')
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'));
            match valid {
                true => Ok(text.clone()),
                false => Err(issue(
                    field,
                    name,
                    format!("`{text}` is not a user or group name"),
                )),
            }
        })
        .collect()
}

/// Group names as an identity provider writes them in the groups claim (any printable text).
fn token_groups(raw: Option<&Spanned<Vec<Spanned<String>>>>) -> Result<Vec<String>, Issue> {
    let Some(list) = raw else {
        return Ok(Vec::new());
    };
    list.get_ref()
        .iter()
        .map(|group| {
            let text = group.get_ref();
            match !text.trim().is_empty()
                && text.len() <= 256
                && !text.chars().any(char::is_control)
            {
                true => Ok(text.clone()),
                false => Err(issue(
                    "approvals.approver_token_groups",
                    group,
                    "a group is non-empty printable text of at most 256 bytes",
                )),
            }
        })
        .collect()
}
