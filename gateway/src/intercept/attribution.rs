//! Who opened an accepted connection: the flow map written by the kernel programs, looked up by
//! (agent address, original destination). Behind a trait so the proxy can be unit-tested.

use std::net::{IpAddr, SocketAddr};

use aya::maps::{HashMap, MapData};
use gateway_common::{Addr, ConnIdentity, FlowKey};

pub trait Attribution: Send + Sync {
    /// The identity recorded for the flow, if the kernel saw an agent open it.
    fn lookup(&self, flow: &FlowKey) -> Option<ConnIdentity>;
}

pub struct BpfAttribution {
    flows: HashMap<MapData, FlowKey, ConnIdentity>,
}

impl BpfAttribution {
    pub fn new(flows: HashMap<MapData, FlowKey, ConnIdentity>) -> Self {
        Self { flows }
    }
}

impl Attribution for BpfAttribution {
    fn lookup(&self, flow: &FlowKey) -> Option<ConnIdentity> {
        match self.flows.get(flow, 0) {
            Ok(identity) => Some(identity),
            Err(aya::maps::MapError::KeyNotFound) => None,
            Err(error) => {
                // Still a refusal (fail closed), but not one to blame on the peer.
                tracing::error!(%error, "flow map lookup failed");
                None
            }
        }
    }
}

/// The map key for a connection seen from the gateway: the peer is the agent's local address,
/// the original destination is what the agent asked for.
pub fn flow_key(peer: SocketAddr, orig_dst: SocketAddr) -> FlowKey {
    FlowKey {
        local_addr: addr_words(peer.ip()),
        remote_addr: addr_words(orig_dst.ip()),
        local_port: peer.port().into(),
        remote_port: orig_dst.port().into(),
    }
}

/// 16 bytes in network order as the kernel stores them, IPv4 as IPv4-mapped IPv6.
pub fn addr_words(ip: IpAddr) -> Addr {
    let octets = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let mut words = [0u32; 4];
    for (word, chunk) in words.iter_mut().zip(octets.chunks_exact(4)) {
        *word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    words
}

pub fn words_addr(words: Addr) -> IpAddr {
    let mut octets = [0u8; 16];
    for (chunk, word) in octets.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    let v6 = std::net::Ipv6Addr::from(octets);
    crate::config::canonical_ip(IpAddr::V6(v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_v6_and_mapped_addresses_share_one_key_form() {
        let v4: IpAddr = "127.0.0.1".parse().expect("v4");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("mapped");
        assert_eq!(addr_words(v4), addr_words(mapped));
        // The kernel's user_ip4 for 127.0.0.1 is the bytes 7f 00 00 01 in memory.
        assert_eq!(addr_words(v4)[3].to_ne_bytes(), [127, 0, 0, 1]);
        assert_eq!(addr_words(v4)[2].to_ne_bytes(), [0, 0, 0xff, 0xff]);
        let v6: IpAddr = "2001:db8::7".parse().expect("v6");
        assert_eq!(words_addr(addr_words(v6)), v6);
        assert_eq!(words_addr(addr_words(mapped)), v4);
    }

    #[test]
    fn flow_key_uses_peer_as_local_and_orig_dst_as_remote() {
        let key = flow_key(
            "10.1.2.3:40000".parse().expect("peer"),
            "10.9.9.9:5432".parse().expect("dst"),
        );
        assert_eq!(key.local_port, 40000);
        assert_eq!(key.remote_port, 5432);
        assert_eq!(
            words_addr(key.remote_addr),
            "10.9.9.9".parse::<IpAddr>().expect("ip")
        );
    }
}
