//! Tollgate's own nftables table (`inet tollgate` by default), installed in one atomic batch:
//! - `output` (nat): TCP carrying the mark set by `connect4`/`connect6` is redirected to the
//!   gateway's listener;
//! - `prerouting` (nat), only with remote agents: connections from their source CIDRs to
//!   protected destinations are redirected too;
//! - `raw_output` and `raw_prerouting` (filter, before conntrack): what is not an agent's flow
//!   skips connection tracking. A nat chain switches tracking on for the whole host, and only
//!   redirected connections need it (`gateway.untrack`, see [`UntrackScope`]). Packets with a
//!   mark (an agent's, or the gateway listener's replies to agents, which conntrack must
//!   translate back) keep it; the gateway's own upstream packets (`bypass_mark`) do not: a
//!   conntrack entry of theirs, left behind when the connection closes, would match an
//!   agent's later connection from the same port and let it through unredirected.
//!
//! With `gateway.redirect = "ebpf"` the programs point agent connects at the listener
//! themselves, and the table holds only the `prerouting` chains (if any).
//!
//! The batch deletes any stale table of the same name in the same transaction, so there is never
//! a moment without rules. A crash leaves the table: agents are refused, never let through.

mod conntrack_users;

use std::borrow::Cow;

use ipnet::IpNet;
use nftables::{
    batch::Batch,
    expr::{
        BinaryOperation, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix,
        CT,
    },
    helper::{self, NftablesError},
    schema::{Chain, FlushObject, NfCmd, NfListObject, Rule, Table},
    stmt::{Match, Operator, Statement, NAT},
    types::{NfChainPolicy, NfChainType, NfFamily, NfHook},
};

use crate::config::{Config, Destination, RedirectMode, UntrackScope};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft refused the ruleset: {}", nft_stderr(.0))]
    Apply(#[from] NftablesError),
    #[error("serialising the ruleset: {0}")]
    Serialise(#[from] serde_json::Error),
}

/// nft's own message says what it disliked; the crate's Display leaves it out.
fn nft_stderr(error: &NftablesError) -> String {
    match error {
        NftablesError::NftFailed { stderr, hint, .. } if !stderr.trim().is_empty() => {
            format!("{hint}: {}", stderr.trim())
        }
        other => other.to_string(),
    }
}

/// Applies a batch atomically (`nft -j -f -`).
fn apply(batch: Batch<'_>) -> Result<(), NftError> {
    let mut json = serde_json::to_value(batch.to_nftables())?;
    fix_notrack(&mut json);
    helper::apply_ruleset_raw(&json.to_string(), helper::DEFAULT_NFT, helper::DEFAULT_ARGS)?;
    Ok(())
}

/// nftables 0.6.3 serialises `Statement::Notrack` as the string "notrack", which nft rejects
/// ("Unexpected expr array element of type string"); nft's JSON form is `{"notrack": null}`.
fn fix_notrack(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) if text == "notrack" => {
            *value = serde_json::json!({ "notrack": null });
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(fix_notrack),
        serde_json::Value::Object(map) => map.values_mut().for_each(fix_notrack),
        _ => {}
    }
}

/// Priority of the nat chains: ahead of iptables-nft/Docker/kube-proxy nat rules at -100 (the
/// first chain that translates a connection wins), after conntrack (-200). The `dstnat` keyword
/// is refused in `output`, so the number is used.
const NAT_PRIORITY: i32 = -150;
/// Priority `raw`: before conntrack (-200) sees the packet.
const RAW_PRIORITY: i32 = -300;

/// What the table exempts from connection tracking, as installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untracked {
    /// `NonAgent` or `Loopback`, never `Auto`.
    pub scope: UntrackScope,
    /// Why `auto` kept to loopback: what else on the host relies on connection tracking.
    pub kept_for: Vec<String>,
}

impl Untracked {
    fn resolve(config: &Config) -> Self {
        let scope = config.gateway.untrack;
        if scope != UntrackScope::Auto {
            return Self {
                scope,
                kept_for: Vec::new(),
            };
        }
        let kept_for = conntrack_users::other_users(&config.gateway.nft_table);
        Self {
            scope: match kept_for.is_empty() {
                true => UntrackScope::NonAgent,
                false => UntrackScope::Loopback,
            },
            kept_for,
        }
    }
}

pub fn install(config: &Config) -> Result<Untracked, NftError> {
    let untracked = Untracked::resolve(config);
    let table = config.gateway.nft_table.as_str();
    let mut batch = Batch::new();
    // `add` then `delete` makes the delete succeed whether or not a stale table exists.
    batch.add(NfListObject::Table(table_object(table)));
    batch.delete(NfListObject::Table(table_object(table)));
    batch.add(NfListObject::Table(table_object(table)));
    let nat_chains = nat_chains(config);
    let local_nat = config.gateway.redirect == RedirectMode::Nftables;
    let any_nat = !nat_chains.is_empty();
    for (chain, rules) in nat_chains {
        add_chain(&mut batch, chain, rules);
    }
    let raw_output = || filter_chain(table, "raw_output", NfHook::Output, RAW_PRIORITY);
    match untracked.scope {
        // Without a nat chain of Tollgate's, tracking is not Tollgate's to switch off.
        UntrackScope::NonAgent if any_nat => {
            add_chain(&mut batch, raw_output(), non_agent_output_notrack(config));
            let raw_prerouting =
                filter_chain(table, "raw_prerouting", NfHook::Prerouting, RAW_PRIORITY);
            add_chain(&mut batch, raw_prerouting, non_agent_input_notrack(config));
        }
        UntrackScope::Loopback if local_nat => {
            add_chain(&mut batch, raw_output(), loopback_notrack_rules(config));
        }
        _ => {}
    }
    apply(batch)?;
    Ok(untracked)
}

/// Stops redirecting new connections while those already redirected drain: each nat chain
/// keeps its hook but its rules give way to one that reads connection state. The kernel keeps
/// tracking (and so translating) connections only while some rule needs it, and forgets the
/// translations when the last one goes: deleting the table, or only its redirect rules, would
/// cut every redirected session mid-stream. A nat chain sees only a connection's first
/// packet, so the rule matches nothing there.
pub fn stop_redirecting(config: &Config) -> Result<(), NftError> {
    let mut batch = Batch::new();
    for (chain, _) in nat_chains(config) {
        let chain = Chain {
            _type: None,
            hook: None,
            prio: None,
            policy: None,
            ..chain
        };
        let keep = rule_in(&chain, vec![keeps_tracking(), Statement::Accept(None)]);
        batch.add_cmd(NfCmd::Flush(FlushObject::Chain(chain)));
        batch.add(NfListObject::Rule(keep));
    }
    apply(batch)
}

/// Tollgate's nat chains with their redirect rules. With the eBPF redirect, local agents never
/// need NAT: no output chain, and the host's connection tracking stays off unless remote agents
/// need the prerouting chain.
fn nat_chains(config: &Config) -> Vec<(Chain<'static>, Vec<Vec<Statement<'static>>>)> {
    let table = config.gateway.nft_table.as_str();
    let mut chains = Vec::new();
    if config.gateway.redirect == RedirectMode::Nftables {
        let chain = nat_chain(table, "output", NfHook::Output);
        chains.push((chain, vec![marked_agent_redirect(config)]));
    }
    let remote_rules = remote_agent_rules(config);
    if !remote_rules.is_empty() {
        chains.push((
            nat_chain(table, "prerouting", NfHook::Prerouting),
            remote_rules,
        ));
    }
    chains
}

/// `ct state established`: a rule that holds connection tracking on.
fn keeps_tracking() -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::CT(CT {
            key: Cow::Borrowed("state"),
            family: None,
            dir: None,
        })),
        right: Expression::String(Cow::Borrowed("established")),
        op: Operator::IN,
    })
}

/// Removes the table if present.
pub fn remove(table: &str) -> Result<(), NftError> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table_object(table)));
    batch.delete(NfListObject::Table(table_object(table)));
    apply(batch)
}

/// Whether the table exists in the kernel now.
pub fn exists(table: &str) -> bool {
    std::process::Command::new("nft")
        .args(["list", "table", "inet", table])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn table_object(name: &str) -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: Cow::Owned(name.to_owned()),
        handle: None,
    }
}

fn nat_chain(table: &str, name: &'static str, hook: NfHook) -> Chain<'static> {
    Chain {
        family: NfFamily::INet,
        table: Cow::Owned(table.to_owned()),
        name: Cow::Borrowed(name),
        _type: Some(NfChainType::NAT),
        hook: Some(hook),
        prio: Some(NAT_PRIORITY),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

fn filter_chain(table: &str, name: &'static str, hook: NfHook, prio: i32) -> Chain<'static> {
    Chain {
        family: NfFamily::INet,
        table: Cow::Owned(table.to_owned()),
        name: Cow::Borrowed(name),
        _type: Some(NfChainType::Filter),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

/// Adds a chain with its rules, in order.
fn add_chain(
    batch: &mut Batch<'static>,
    chain: Chain<'static>,
    rules: Vec<Vec<Statement<'static>>>,
) {
    let rules: Vec<Rule<'static>> = rules
        .into_iter()
        .map(|statements| rule_in(&chain, statements))
        .collect();
    batch.add(NfListObject::Chain(chain));
    for rule in rules {
        batch.add(NfListObject::Rule(rule));
    }
}

fn rule_in(chain: &Chain<'static>, statements: Vec<Statement<'static>>) -> Rule<'static> {
    Rule {
        family: NfFamily::INet,
        table: chain.table.clone(),
        chain: chain.name.clone(),
        expr: Cow::Owned(statements),
        ..Rule::default()
    }
}

#[cfg(test)]
fn rule(table: &str, chain: &'static str, statements: Vec<Statement<'static>>) -> Rule<'static> {
    Rule {
        family: NfFamily::INet,
        table: Cow::Owned(table.to_owned()),
        chain: Cow::Borrowed(chain),
        expr: Cow::Owned(statements),
        ..Rule::default()
    }
}

fn equals(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

fn redirect_to(port: u16) -> Statement<'static> {
    Statement::Redirect(Some(NAT {
        addr: None,
        family: None,
        port: Some(Expression::Number(port.into())),
        flags: None,
    }))
}

fn tcp() -> Statement<'static> {
    equals(
        meta(MetaKey::L4proto),
        Expression::String(Cow::Borrowed("tcp")),
    )
}

/// A connection's first packet from its initiator (SYN without ACK). The nat chain sees the
/// first packet conntrack did not know, and with untracked flows that can be a listener's
/// SYN-ACK (marked, see [`marked_keep_tracking`]) to a client that connected to it directly:
/// that must not be redirected back to the listener.
fn opening_syn() -> Statement<'static> {
    let flag = |name: &'static str| Expression::String(Cow::Borrowed(name));
    equals(
        Expression::BinaryOperation(Box::new(BinaryOperation::AND(
            payload("tcp", "flags"),
            Expression::List(vec![flag("syn"), flag("ack")]),
        ))),
        flag("syn"),
    )
}

fn marked_agent_redirect(config: &Config) -> Vec<Statement<'static>> {
    vec![
        equals(meta(MetaKey::Mark), Expression::Number(config.gateway.mark)),
        tcp(),
        opening_syn(),
        redirect_to(config.gateway.listen_port),
    ]
}

/// Marked packets keep conntrack: this gateway's agents', its listener's replies to them (which
/// must be translated back) and another instance's on the host (its own table and mark).
/// Unmarked packets and the gateway's own upstream ones (`bypass_mark`) go on to be untracked.
fn marked_keep_tracking(config: &Config) -> Vec<Statement<'static>> {
    let mark_is_not = |mark: u32| {
        Statement::Match(Match {
            left: meta(MetaKey::Mark),
            right: Expression::Number(mark),
            op: Operator::NEQ,
        })
    };
    vec![
        mark_is_not(0),
        mark_is_not(config.gateway.bypass_mark),
        Statement::Return(None),
    ]
}

/// `untrack = "non-agent"`, leaving the host: everything but marked packets and resets. A
/// reset the kernel sends for a redirected connection that found no listener (the gateway is
/// down) carries no mark, and only conntrack can give it the address the agent connected to:
/// with it the agent is refused at once. A reset creates no conntrack entry of its own.
fn non_agent_output_notrack(config: &Config) -> Vec<Vec<Statement<'static>>> {
    let reset = Statement::Match(Match {
        left: payload("tcp", "flags"),
        right: Expression::String(Cow::Borrowed("rst")),
        op: Operator::IN,
    });
    vec![
        marked_keep_tracking(config),
        vec![tcp(), reset, Statement::Return(None)],
        vec![Statement::Notrack],
    ]
}

/// `untrack = "non-agent"`, arriving: everything but what remote agents send (their
/// connections to protected destinations are redirected in `prerouting`). Loopback packets
/// arrive already tracked or untracked by `raw_output`, and notrack leaves those alone.
fn non_agent_input_notrack(config: &Config) -> Vec<Vec<Statement<'static>>> {
    let mut rules: Vec<Vec<Statement<'static>>> = config
        .agents
        .remote_sources
        .iter()
        .map(|source| vec![source_match(source), Statement::Return(None)])
        .collect();
    rules.push(vec![Statement::Notrack]);
    rules
}

/// `untrack = "loopback"`: unmarked loopback packets to or from a protected port skip
/// conntrack, so a non-agent connect to a local protected database pays nothing for it.
fn loopback_notrack_rules(config: &Config) -> Vec<Vec<Statement<'static>>> {
    let mut ports: Vec<u16> = config
        .targets
        .iter()
        .flat_map(|t| &t.destinations)
        .map(|d| d.port())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let mut rules = vec![marked_keep_tracking(config)];
    for port in ports {
        for field in ["dport", "sport"] {
            // Every loopback packet of the host passes here: the most selective, cheapest tests
            // come first, and `oif` compares the interface index rather than its name.
            rules.push(vec![
                tcp(),
                equals(payload("tcp", field), Expression::Number(port.into())),
                equals(meta(MetaKey::Oif), Expression::String(Cow::Borrowed("lo"))),
                Statement::Notrack,
            ]);
        }
    }
    rules
}

fn source_match(source: &IpNet) -> Statement<'static> {
    equals(
        payload(ip_protocol(source), "saddr"),
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(Expression::String(Cow::Owned(source.network().to_string()))),
            len: source.prefix_len().into(),
        })),
    )
}

fn ip_protocol(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ip6",
    }
}

fn remote_agent_rules(config: &Config) -> Vec<Vec<Statement<'static>>> {
    let mut rules = Vec::new();
    for source in &config.agents.remote_sources {
        let protocol = ip_protocol(source);
        let source_match = source_match(source);
        for destination in config.targets.iter().flat_map(|t| &t.destinations) {
            let mut statements = vec![source_match.clone(), tcp()];
            if let Destination::Exact(addr) = destination {
                let dest_ip = crate::config::canonical_ip(addr.ip());
                if dest_ip.is_ipv4() != source.addr().is_ipv4() {
                    continue;
                }
                statements.push(equals(
                    payload(protocol, "daddr"),
                    Expression::String(Cow::Owned(dest_ip.to_string())),
                ));
            }
            statements.push(equals(
                payload("tcp", "dport"),
                Expression::Number(destination.port().into()),
            ));
            statements.push(redirect_to(config.gateway.listen_port));
            rules.push(statements);
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::parse(std::path::Path::new("test.toml"), text).expect("valid config")
    }

    #[test]
    fn output_chain_redirects_marked_tcp_to_the_listener() {
        let config = config(
            "[gateway]\nlisten_port = 16000\nmark = 7\n[agents]\ncgroups = [\"/a\"]\n\
             [[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n",
        );
        let json = serde_json::to_value(rule("tollgate", "output", marked_agent_redirect(&config)))
            .expect("serialises");
        let text = json.to_string();
        assert!(text.contains(r#""key":"mark""#), "{text}");
        assert!(text.contains(r#""right":7"#), "{text}");
        assert!(text.contains(r#""redirect":{"port":16000}"#), "{text}");
        // Only a connection's opening SYN is redirected.
        assert!(
            text.contains(r#""field":"flags""#)
                && text.contains(r#"["syn","ack"]"#)
                && text.contains(r#""right":"syn""#),
            "{text}"
        );
        assert!(remote_agent_rules(&config).is_empty());
    }

    #[test]
    fn only_unmarked_loopback_traffic_of_protected_ports_skips_conntrack() {
        let config = config(
            "[gateway]\nmark = 7\n[agents]\ncgroups = [\"/a\"]\n[[targets]]\nname = \"db\"\n\
             kind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\", \"[::1]:5432\", \"*:9000\"]\n",
        );
        let rules = loopback_notrack_rules(&config);
        // Marked packets (this gateway's agents or another instance's), but not the gateway's
        // own upstream ones, return first; then dport/sport for each distinct port.
        assert_eq!(rules.len(), 1 + 2 * 2);
        let first = serde_json::to_string(&rules[0]).expect("serialises");
        let not = |mark: u32| format!(r#""right":{mark},"op":"!=""#);
        assert!(
            first.contains(&not(0))
                && first.contains(&not(config.gateway.bypass_mark))
                && first.contains("return"),
            "{first}"
        );
        let text = serde_json::to_string(&rules[1..]).expect("serialises");
        assert!(text.contains(r#""key":"oif"}},"right":"lo""#), "{text}");
        assert!(text.contains(r#""field":"dport"}},"right":5432"#), "{text}");
        assert!(text.contains(r#""field":"sport"}},"right":9000"#), "{text}");
        assert_eq!(text.matches("notrack").count(), 4, "{text}");
    }

    #[test]
    fn non_agent_scope_untracks_all_but_marked_packets_and_remote_agent_sources() {
        let config = config(
            "[gateway]\nmark = 7\n[agents]\ncgroups = [\"/a\"]\n\
             remote_sources = [\"10.20.0.0/16\", \"fd00:1::/64\"]\n[[targets]]\nname = \"db\"\n\
             kind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n",
        );
        let output = serde_json::to_string(&non_agent_output_notrack(&config)).expect("json");
        let not = |mark: u32| format!(r#""right":{mark},"op":"!=""#);
        assert!(
            output.contains(&not(0)) && output.contains(&not(config.gateway.bypass_mark)),
            "{output}"
        );
        assert!(output.ends_with(r#"],["notrack"]]"#), "{output}");
        assert!(output.contains(r#""right":"rst","op":"in""#), "{output}");
        let input = non_agent_input_notrack(&config);
        assert_eq!(input.len(), 3, "one return per remote source, then notrack");
        let text = serde_json::to_string(&input).expect("json");
        assert!(
            text.contains(r#""protocol":"ip","field":"saddr""#),
            "{text}"
        );
        assert!(text.contains(r#""addr":"fd00:1::","len":64"#), "{text}");
        assert_eq!(text.matches("return").count(), 2, "{text}");
        assert!(text.ends_with(r#"],["notrack"]]"#), "{text}");
    }

    #[test]
    fn remote_sources_get_one_rule_per_compatible_destination() {
        let config = config(
            "[agents]\nremote_sources = [\"10.20.0.0/16\"]\n[[targets]]\nname = \"db\"\n\
             kind = \"postgres\"\ndestinations = [\"10.0.0.5:5432\", \"[::1]:5432\", \"*:6432\"]\n",
        );
        let rules = remote_agent_rules(&config);
        // The IPv6 destination cannot be reached from an IPv4 source network.
        assert_eq!(rules.len(), 2);
        let text = serde_json::to_string(&rules[0]).expect("serialises");
        assert!(text.contains(r#""addr":"10.20.0.0","len":16"#), "{text}");
        assert!(text.contains(r#""right":"10.0.0.5""#), "{text}");
        assert!(text.contains(r#""right":5432"#), "{text}");
    }
}
