//! The `[approvals]` section: defaults, explicit values, and each bad value named.

use std::{path::Path, time::Duration};

use super::bad_files::{assert_all_reported, Bad};
use crate::config::parse;

const REST: &str = "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n";

#[test]
fn by_default_nobody_may_approve_and_a_request_waits_ten_minutes() {
    let config = parse(Path::new("t.toml"), REST).expect("valid");
    let approvals = &config.approvals;
    assert!(approvals.approver_users.is_empty() && approvals.approver_groups.is_empty());
    assert_eq!(approvals.required, 1);
    assert_eq!(approvals.timeout, Duration::from_secs(600));
}

#[test]
fn explicit_values_are_taken() {
    let text = format!(
        "{REST}[approvals]\napprover_users = [\"alice\", \"bob\"]\napprover_groups = [\"dba\"]\nrequired = 2\ntimeout_s = 120\nwebhook_url = \"https://hooks.example.org/services/T0/B0\"\n"
    );
    let config = parse(Path::new("t.toml"), &text).expect("valid");
    let approvals = &config.approvals;
    assert_eq!(approvals.approver_users, ["alice", "bob"]);
    assert_eq!(approvals.approver_groups, ["dba"]);
    assert_eq!(approvals.required, 2);
    assert_eq!(approvals.timeout, Duration::from_secs(120));
    let webhook = approvals.webhook.as_ref().expect("a webhook");
    assert!(webhook.https);
    assert_eq!(
        (webhook.host.as_str(), webhook.port, webhook.path.as_str()),
        ("hooks.example.org", 443, "/services/T0/B0")
    );
}

#[test]
fn bad_approval_settings_name_the_line_and_field() {
    assert_all_reported(&[
        Bad {
            what: "no approver required",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[approvals]\nrequired = 0\n",
            line: 8,
            field: "approvals.required",
            fragments: &["between 1 and 10"],
        },
        Bad {
            what: "zero timeout",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[approvals]\ntimeout_s = 0\n",
            line: 8,
            field: "approvals.timeout_s",
            fragments: &["between 1 and"],
        },
        Bad {
            what: "a user name with a space",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[approvals]\napprover_users = [\"alice\", \"no body\"]\n",
            line: 8,
            field: "approvals.approver_users",
            fragments: &["`no body`", "not a user or group name"],
        },
        Bad {
            what: "a group name starting with a dash",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[approvals]\napprover_groups = [\"-dba\"]\n",
            line: 8,
            field: "approvals.approver_groups",
            fragments: &["`-dba`"],
        },
        Bad {
            what: "a plain-text webhook to another host",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[approvals]\nwebhook_url = \"http://hooks.example.org/x\"\n",
            line: 8,
            field: "approvals.webhook_url",
            fragments: &["loopback", "https://"],
        },
        Bad {
            what: "a webhook CA file without a webhook",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[approvals]\nwebhook_ca_file = \"/etc/ca.pem\"\n",
            line: 8,
            field: "approvals.webhook_ca_file",
            fragments: &["webhook_url"],
        },
        Bad {
            what: "an unknown field",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[approvals]\napprovers = [\"alice\"]\n",
            line: 8,
            field: "approvals.approvers",
            fragments: &["unknown field", "approver_users"],
        },
        Bad {
            what: "the HTTPS API without token settings",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[approvals]\nhttp_listen = \"127.0.0.1:9443\"\n",
            line: 8,
            field: "approvals.http_listen",
            fragments: &["needs token_issuer"],
        },
        Bad {
            what: "the HTTPS API without approver groups",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[approvals]\nhttp_listen = \"127.0.0.1:9443\"\ntoken_issuer = \"https://idp\"\ntoken_audience = \"tollgate\"\ntoken_jwks_file = \"/etc/jwks.json\"\n",
            line: 8,
            field: "approvals.http_listen",
            fragments: &["approver_token_groups"],
        },
        Bad {
            what: "an address without a port",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[approvals]\nhttp_listen = \"127.0.0.1\"\n",
            line: 8,
            field: "approvals.http_listen",
            fragments: &["`127.0.0.1`", "address and port"],
        },
        Bad {
            what: "token settings without the HTTPS API",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[approvals]\ntoken_issuer = \"https://idp\"\n",
            line: 8,
            field: "approvals.token_issuer",
            fragments: &["only used with approvals.http_listen"],
        },
    ]);
}

#[test]
fn the_https_api_takes_a_listener_token_settings_and_approver_groups() {
    let text = format!(
        "{REST}[approvals]\nhttp_listen = \"[::1]:9443\"\napprover_token_groups = [\"phi-approvers\", \"/org/security officers\"]\ntoken_issuer = \"https://idp.example.org\"\ntoken_audience = \"tollgate-approvals\"\ntoken_jwks_file = \"/etc/tollgate/idp.jwks\"\ntoken_groups_claim = \"roles\"\n"
    );
    let config = parse(Path::new("t.toml"), &text).expect("valid");
    let http = config.approvals.http.as_ref().expect("the API is on");
    assert_eq!(http.listen, "[::1]:9443".parse().expect("address"));
    assert_eq!(
        http.approver_groups,
        ["phi-approvers", "/org/security officers"]
    );
    assert_eq!(http.tokens.issuer, "https://idp.example.org");
    assert_eq!(http.tokens.audience, "tollgate-approvals");
    assert_eq!(http.tokens.groups_claim, "roles");
    assert!(parse(Path::new("t.toml"), REST)
        .expect("valid")
        .approvals
        .http
        .is_none());
}
