//! Listener coverage: a protected destination on a local address protects its port on every
//! local address the server listens on. An agent told `127.0.0.1:5432` is protected could
//! otherwise connect to the host's own `10.0.0.5:5432` (a wildcard listener answers there) and
//! reach the server directly.
//!
//! The host's listening sockets are read at startup and re-read every second (`host.rs` says
//! how and why). [`plan`] is a pure function of the configuration and that snapshot: which
//! (address, port) pairs a target covers beyond its destinations, and which listeners a
//! `coverage = "strict"` target leaves uncovered. The extension goes into the kernel's
//! `PROTECTED` map; [`CoverageView`] lets the proxy pick the target of an extended address.

pub mod host;

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::RwLock,
};

use serde::Serialize;

use crate::config::{canonical_ip, Config, Coverage, Destination, Target};

/// What the host looked like at one scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSnapshot {
    /// Listening TCP sockets, addresses canonical (v4-mapped shown as v4).
    pub listeners: Vec<SocketAddr>,
    /// Addresses of this host's interfaces.
    pub local_addrs: Vec<IpAddr>,
}

/// An address a listener answers on, and who protects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reach {
    pub target: String,
    /// Where an agent could connect.
    pub address: SocketAddr,
    /// The listening socket that answers there (`0.0.0.0:5432`, `[::]:5432`, ...).
    pub listener: SocketAddr,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Named by the target's destinations: intercepted as configured.
    pub named: Vec<Reach>,
    /// Not named, protected by extension (`coverage = "extend"`, the default).
    pub extended: Vec<Reach>,
    /// Not named, and the target is `coverage = "strict"`: agents could connect here directly.
    pub uncovered: Vec<Reach>,
}

impl Plan {
    /// (address, port) pairs to add to the kernel's `PROTECTED` map.
    pub fn extended_keys(&self) -> BTreeSet<SocketAddr> {
        self.extended.iter().map(|r| r.address).collect()
    }
}

/// Every loopback address of 127.0.0.0/8 is one address here, as in the kernel programs:
/// `127.0.0.2` reaches a server listening on `0.0.0.0` as well as `127.0.0.1` does.
pub fn loopback_as_one(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        other => other,
    }
}

/// Which targets cover which listening addresses, given the host's listeners.
pub fn plan(config: &Config, host: &HostSnapshot) -> Plan {
    let locals: BTreeSet<IpAddr> = host
        .local_addrs
        .iter()
        .map(|ip| loopback_as_one(*ip))
        .chain([
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ])
        .collect();
    let mut plan = Plan::default();
    let mut seen: BTreeSet<SocketAddr> = BTreeSet::new();
    for target in &config.targets {
        let ports = local_ports(target, &locals);
        for listener in host.listeners.iter().filter(|l| ports.contains(&l.port())) {
            for ip in reachable(listener.ip(), &locals) {
                let address = SocketAddr::new(ip, listener.port());
                let owner = config.target_for(address);
                // Named by another target: that one protects it. Otherwise the first target
                // to reach an address claims it.
                if owner.is_some_and(|o| o.name != target.name) || !seen.insert(address) {
                    continue;
                }
                let reach = Reach {
                    target: target.name.clone(),
                    address,
                    listener: *listener,
                };
                match (owner, target.coverage) {
                    (Some(_), _) => plan.named.push(reach),
                    (None, Coverage::Extend) => plan.extended.push(reach),
                    (None, Coverage::Strict) => plan.uncovered.push(reach),
                }
            }
        }
    }
    plan
}

/// Ports the target protects on a local address (or on every address).
fn local_ports(target: &Target, locals: &BTreeSet<IpAddr>) -> BTreeSet<u16> {
    target
        .destinations
        .iter()
        .filter(|d| match d {
            Destination::Exact(addr) => locals.contains(&loopback_as_one(addr.ip())),
            Destination::AnyAddress(_) => true,
        })
        .map(|d| d.port())
        .collect()
}

/// The local addresses a listener bound to `ip` answers on. A `::` listener is taken to accept
/// IPv4 too (unless it is v6-only, which /proc does not show): covering more of the same
/// server's port is safe, covering less is not.
fn reachable(ip: IpAddr, locals: &BTreeSet<IpAddr>) -> Vec<IpAddr> {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => {
            locals.iter().copied().filter(IpAddr::is_ipv4).collect()
        }
        IpAddr::V6(v6) if v6.is_unspecified() => locals.iter().copied().collect(),
        other => vec![loopback_as_one(other)],
    }
}

/// The plan in force, shared with the proxy (target of an extended address) and the status
/// document.
#[derive(Debug, Default)]
pub struct CoverageView {
    plan: RwLock<Plan>,
}

impl CoverageView {
    pub fn set(&self, plan: Plan) {
        if let Ok(mut current) = self.plan.write() {
            *current = plan;
        }
    }

    pub fn plan(&self) -> Plan {
        self.plan.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// The target protecting `orig_dst`: named by a destination, or covered by extension.
    pub fn target_for<'a>(&self, config: &'a Config, orig_dst: SocketAddr) -> Option<&'a Target> {
        let dst = SocketAddr::new(loopback_as_one(orig_dst.ip()), orig_dst.port());
        if let Some(target) = config
            .target_for(orig_dst)
            .or_else(|| config.target_for(dst))
        {
            return Some(target);
        }
        let plan = self.plan.read().ok()?;
        let reach = plan.extended.iter().find(|r| r.address == dst)?;
        config.targets.iter().find(|t| t.name == reach.target)
    }
}

#[cfg(test)]
mod tests;
