//! Who else on this host (network namespace) relies on connection tracking. Untracking a flow
//! under a stateful rule (`ct state established accept`), a NAT (Docker, kube-proxy) or a
//! legacy iptables table would change what that rule sees, so `untrack = "auto"` untracks
//! every non-agent flow only when nobody is found here.

use nftables::helper;
use serde_json::Value;

/// Expression keys that read or create connection state (nft's JSON names).
const STATEFUL_KEYS: [&str; 12] = [
    "ct",
    "ct helper",
    "ct timeout",
    "ct expectation",
    "ct count",
    "snat",
    "dnat",
    "masquerade",
    "redirect",
    "tproxy",
    "flow",
    "synproxy",
];

/// What relies on connection tracking, one line each; empty when nothing does. A ruleset that
/// cannot be read counts as one (fail towards changing nothing).
pub fn other_users(own_table: &str) -> Vec<String> {
    let mut users = match ruleset() {
        Ok(ruleset) => users_in_ruleset(&ruleset, own_table),
        Err(error) => vec![format!("the host's ruleset could not be read ({error})")],
    };
    users.extend(legacy_iptables());
    users
}

fn ruleset() -> Result<Value, String> {
    let text = helper::get_current_ruleset_raw(helper::DEFAULT_NFT, helper::DEFAULT_ARGS)
        .map_err(|error| super::nft_stderr(&error))?;
    serde_json::from_str(&text).map_err(|error| format!("nft -j: {error}"))
}

/// Tables other than `inet <own_table>` with a nat chain, or a rule reading or setting
/// connection state (an iptables-nft compat match counts: it may be `-m state`).
pub fn users_in_ruleset(ruleset: &Value, own_table: &str) -> Vec<String> {
    let objects = ruleset["nftables"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let mut users = Vec::new();
    let mut note = |what: String| {
        if !users.contains(&what) {
            users.push(what);
        }
    };
    for object in objects {
        let (kind, body) = match object.as_object().and_then(|o| o.iter().next()) {
            Some((kind, body)) if kind == "chain" || kind == "rule" => (kind.as_str(), body),
            _ => continue,
        };
        let family = body["family"].as_str().unwrap_or("?");
        let table = body["table"].as_str().unwrap_or("?");
        if family == "inet" && table == own_table {
            continue;
        }
        let stateful = match kind {
            "chain" => body["type"] == "nat",
            _ => reads_state(&body["expr"]),
        };
        if stateful {
            note(format!("nftables table {family} {table}"));
        }
    }
    users
}

fn reads_state(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(reads_state),
        Value::Object(map) => map.iter().any(|(key, inner)| {
            STATEFUL_KEYS.contains(&key.as_str()) || key == "xt" || reads_state(inner)
        }),
        _ => false,
    }
}

/// Legacy (x_tables) iptables tables in use: their rules cannot be read from here, so any
/// table counts.
fn legacy_iptables() -> Vec<String> {
    ["ip_tables_names", "ip6_tables_names"]
        .iter()
        .filter_map(|file| {
            let names = std::fs::read_to_string(format!("/proc/net/{file}")).ok()?;
            let names: Vec<&str> = names.split_whitespace().collect();
            (!names.is_empty()).then(|| {
                let family = if file.starts_with("ip6") {
                    "ip6tables"
                } else {
                    "iptables"
                };
                format!("legacy {family} tables: {}", names.join(", "))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ruleset(objects: Value) -> Value {
        serde_json::json!({ "nftables": objects })
    }

    #[test]
    fn a_stateful_firewall_and_a_nat_table_are_found() {
        let rules = ruleset(serde_json::json!([
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "filter", "handle": 1}},
            {"chain": {"family": "inet", "table": "filter", "name": "input", "type": "filter",
                       "hook": "input", "prio": 0, "policy": "drop"}},
            {"rule": {"family": "inet", "table": "filter", "chain": "input", "expr": [
                {"match": {"op": "in", "left": {"ct": {"key": "state"}},
                           "right": ["established", "related"]}},
                {"accept": null}]}},
            {"chain": {"family": "ip", "table": "nat", "name": "POSTROUTING", "type": "nat",
                       "hook": "postrouting", "prio": 100, "policy": "accept"}},
        ]));
        assert_eq!(
            users_in_ruleset(&rules, "tollgate"),
            vec!["nftables table inet filter", "nftables table ip nat"]
        );
    }

    #[test]
    fn tollgate_s_own_table_and_stateless_rules_are_not_users() {
        let rules = ruleset(serde_json::json!([
            {"chain": {"family": "inet", "table": "tollgate", "name": "output", "type": "nat",
                       "hook": "output", "prio": -150, "policy": "accept"}},
            {"rule": {"family": "inet", "table": "tollgate", "chain": "output", "expr": [
                {"redirect": {"port": 15432}}]}},
            {"rule": {"family": "inet", "table": "filter", "chain": "input", "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                           "right": 22}},
                {"accept": null}]}},
            // Another table of the same name in another family is not Tollgate's.
            {"rule": {"family": "ip", "table": "tollgate", "chain": "c", "expr": [
                {"xt": {"type": "match", "name": "state"}}]}},
        ]));
        assert_eq!(
            users_in_ruleset(&rules, "tollgate"),
            vec!["nftables table ip tollgate"]
        );
    }
}
