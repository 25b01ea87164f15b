//! The host's listening TCP sockets and interface addresses.
//!
//! Listeners come from `/proc/net/tcp` and `/proc/net/tcp6`, re-read every second. Neither
//! they nor netlink `sock_diag` notify when a socket starts listening, so either way it is a
//! poll; the proc files need no netlink code, are what `ss` falls back to, and cost a read of
//! every TCP socket of the host (a few hundred microseconds for thousands of connections),
//! which once a second is negligible. A listener that appears is covered within a second.
//! Interface addresses come from `getifaddrs(3)`, read at the same time.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

use super::HostSnapshot;
use crate::config::canonical_ip;

/// `TCP_LISTEN` in the `st` column.
const LISTEN: &str = "0A";

/// Reads the listeners under `proc_root` (`/proc`) and the interface addresses.
pub fn snapshot(proc_root: &Path) -> io::Result<HostSnapshot> {
    let mut listeners = Vec::new();
    for file in ["net/tcp", "net/tcp6"] {
        match std::fs::read_to_string(proc_root.join(file)) {
            Ok(text) => listeners.extend(parse_listeners(&text)),
            // No IPv6 on this host.
            Err(error) if error.kind() == io::ErrorKind::NotFound && file == "net/tcp6" => {}
            Err(error) => return Err(error),
        }
    }
    listeners.sort();
    listeners.dedup();
    let mut local_addrs = interface_addrs()?;
    local_addrs.sort();
    local_addrs.dedup();
    Ok(HostSnapshot {
        listeners,
        local_addrs,
    })
}

/// Listening sockets in one `/proc/net/tcp{,6}` text.
pub fn parse_listeners(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            (state == LISTEN).then_some(())?;
            let (ip, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some(SocketAddr::new(canonical_ip(parse_ip(ip)?), port))
        })
        .collect()
}

/// The kernel prints each 32-bit word of the address as a native-endian integer.
fn parse_ip(hex: &str) -> Option<IpAddr> {
    let words: Option<Vec<[u8; 4]>> = (0..hex.len() / 8)
        .map(|i| {
            let word = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
            Some(word.to_ne_bytes())
        })
        .collect();
    let words = words?;
    match words.as_slice() {
        [v4] => Some(IpAddr::V4(Ipv4Addr::from(*v4))),
        [a, b, c, d] => {
            let mut octets = [0u8; 16];
            for (chunk, word) in octets.chunks_exact_mut(4).zip([a, b, c, d]) {
                chunk.copy_from_slice(word);
            }
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// Every address on this host's interfaces.
fn interface_addrs() -> io::Result<Vec<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list freed below with freeifaddrs.
    #[expect(unsafe_code, reason = "getifaddrs(3) has no std wrapper")]
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, not yet freed; an address
        // is read as the type its family says it is.
        #[expect(unsafe_code, reason = "walking getifaddrs(3)'s list")]
        unsafe {
            let addr = (*entry).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*addr.cast::<libc::sockaddr_in>();
                        out.push(IpAddr::V4(Ipv4Addr::from(
                            sin.sin_addr.s_addr.to_ne_bytes(),
                        )));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*addr.cast::<libc::sockaddr_in6>();
                        out.push(canonical_ip(IpAddr::V6(Ipv6Addr::from(
                            sin6.sin6_addr.s6_addr,
                        ))));
                    }
                    _ => {}
                }
            }
            entry = (*entry).ifa_next;
        }
    }
    // SAFETY: the list came from getifaddrs and is freed once.
    #[expect(unsafe_code, reason = "freeing getifaddrs(3)'s list")]
    unsafe {
        libc::freeifaddrs(list)
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_read_in_both_families() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 1 1 0 100 0 0 10 0\n\
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n\
   2: 0100007F:1538 0100007F:9C40 01 00000000:00000000 00:00000000 00000000   107        0 3 1 0 20 4 30 10 -1\n";
        assert_eq!(
            parse_listeners(tcp),
            [
                "127.0.0.1:5432".parse::<SocketAddr>().expect("a"),
                "0.0.0.0:22".parse().expect("b")
            ]
        );
        let tcp6 = "  sl  local_address                         remote_address                        st\n\
   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 0\n\
   1: 00000000000000000000000000000000:1538 00000000000000000000000000000000:0000 0A 0\n\
   2: 0000000000000000FFFF00000500000A:1538 00000000000000000000000000000000:0000 0A 0\n";
        assert_eq!(
            parse_listeners(tcp6),
            [
                "[::1]:5432".parse::<SocketAddr>().expect("c"),
                "[::]:5432".parse().expect("d"),
                "10.0.0.5:5432".parse().expect("e"),
            ]
        );
    }

    #[test]
    fn this_hosts_snapshot_has_loopback() {
        let host = snapshot(Path::new("/proc")).expect("snapshot");
        assert!(
            host.local_addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{host:?}"
        );
    }
}
