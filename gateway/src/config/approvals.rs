//! The `[approvals]` section: who may approve a held request, how many must, and how long a
//! request waits when its rule names no timeout.

use std::time::Duration;

use toml::Spanned;

use super::{
    auth::{endpoint, https_ca_file, is_loopback, parse_url},
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
    })
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
