//! The host's listening TCP sockets and interface addresses.
//!
//! Listeners come from netlink `sock_diag`, asking for listening sockets only, re-read every
//! second. Nothing notifies when a socket starts listening, so it is a poll; asked for
//! listeners alone, the kernel walks its listening hash and nothing else, a few microseconds.
//! Reading `/proc/net/tcp` instead walks the whole established hash (262,144 buckets on this
//! 24 GiB machine, 2 ms a read even with no connection), which taxed every host once a second
//! and the gateway's own transactions. A listener that appears is covered within a second.
//! Interface addresses come from `getifaddrs(3)`, read at the same time.

use std::{
    io::{self, Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use socket2::{Domain, Protocol, Socket, Type};

use super::HostSnapshot;
use crate::config::canonical_ip;

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// `TCP_LISTEN` in the kernel's TCP states.
const TCP_LISTEN: u32 = 10;
const NLMSG_HEADER: usize = 16;
/// `struct inet_diag_sockid`: ports, two 16-byte addresses, interface, cookie.
const SOCKID: usize = 48;

/// Reads the host's listeners and interface addresses.
pub fn snapshot() -> io::Result<HostSnapshot> {
    let mut listeners = listening_sockets()?;
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

/// Listening TCP sockets of both families, from one `sock_diag` dump each.
fn listening_sockets() -> io::Result<Vec<SocketAddr>> {
    let mut socket = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::DGRAM.cloexec(),
        Some(Protocol::from(libc::NETLINK_SOCK_DIAG)),
    )?;
    let mut listeners = Vec::new();
    // Twice the most the kernel puts in one dump datagram (32 KiB): a datagram that fills it
    // may have been cut, even at a message boundary, and fails the scan (the last plan
    // stays) rather than pass as fewer listeners.
    let mut buffer = vec![0u8; 64 * 1024];
    for (seq, family) in [(1, libc::AF_INET), (2, libc::AF_INET6)] {
        socket.write_all(&listeners_request(family as u8, seq))?;
        'dump: loop {
            let n = socket.read(&mut buffer)?;
            if n == buffer.len() {
                return Err(io::Error::other("sock_diag: a datagram may have been cut"));
            }
            for message in messages(&buffer[..n]) {
                match message? {
                    Message::Socket(addr) => listeners.push(addr),
                    Message::Done => break 'dump,
                    // No IPv6 on this host.
                    Message::Error(errno) if family == libc::AF_INET6 && errno == libc::ENOENT => {
                        break 'dump
                    }
                    Message::Error(errno) => return Err(io::Error::from_raw_os_error(errno)),
                }
            }
        }
    }
    Ok(listeners)
}

/// A dump request for the listening TCP sockets of one address family: a `nlmsghdr`, then an
/// `inet_diag_req_v2` (family, protocol, extensions, pad, states, an empty socket id).
fn listeners_request(family: u8, seq: u32) -> Vec<u8> {
    let len = NLMSG_HEADER + 8 + SOCKID;
    let mut request = Vec::with_capacity(len);
    request.extend_from_slice(&(len as u32).to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request.extend_from_slice(&seq.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    request.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    request.resize(len, 0);
    request
}

#[derive(Debug, PartialEq, Eq)]
enum Message {
    Socket(SocketAddr),
    Done,
    /// A positive errno.
    Error(i32),
}

/// The netlink messages of one datagram.
fn messages(mut datagram: &[u8]) -> impl Iterator<Item = io::Result<Message>> + '_ {
    std::iter::from_fn(move || {
        if datagram.len() < NLMSG_HEADER {
            return None;
        }
        let len = u32::from_ne_bytes(datagram[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(datagram[4..6].try_into().ok()?);
        if len < NLMSG_HEADER || len > datagram.len() {
            datagram = &[];
            return Some(Err(io::Error::other(
                "sock_diag: a truncated netlink message",
            )));
        }
        let body = &datagram[NLMSG_HEADER..len];
        // Messages are 4-byte aligned.
        datagram = datagram.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some(match kind {
            NLMSG_DONE => Ok(Message::Done),
            NLMSG_ERROR => match body.get(..4) {
                Some(code) => Ok(Message::Error(-i32::from_ne_bytes(
                    code.try_into().unwrap_or_default(),
                ))),
                None => Err(io::Error::other("sock_diag: an empty error message")),
            },
            SOCK_DIAG_BY_FAMILY => local_address(body)
                .map(Message::Socket)
                .ok_or_else(|| io::Error::other("sock_diag: a short inet_diag_msg")),
            other => Err(io::Error::other(format!(
                "sock_diag: unexpected netlink message type {other}"
            ))),
        })
    })
}

/// The local address of an `inet_diag_msg`: family, state, timer, retransmits, then the
/// socket id (source port and address in network order).
fn local_address(body: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(*body.first()?);
    let id = body.get(4..4 + SOCKID)?;
    let port = u16::from_be_bytes([id[0], id[1]]);
    let ip = match family {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&id[4..8]).ok()?)),
        libc::AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&id[4..20]).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(canonical_ip(ip), port))
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
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn listeners_of_both_families_are_found_and_connections_are_not() {
        let v4 = TcpListener::bind("127.0.0.1:0").expect("v4 listener");
        let v6 = TcpListener::bind("[::1]:0").expect("v6 listener");
        let client = TcpStream::connect(v4.local_addr().expect("addr")).expect("connect");
        let (accepted, _) = v4.accept().expect("accept");
        let host = snapshot().expect("snapshot");
        for listener in [&v4, &v6] {
            let addr = listener.local_addr().expect("addr");
            assert!(host.listeners.contains(&addr), "{addr} in {host:?}");
        }
        // Connected sockets are not listeners (the accepted one shares the listener's port).
        let connected = client.local_addr().expect("client addr");
        assert!(
            !host.listeners.contains(&connected),
            "{connected} in {host:?}"
        );
        drop(accepted);
        assert!(
            host.local_addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{host:?}"
        );
    }

    #[test]
    fn a_dump_is_read_message_by_message_and_an_error_names_its_errno() {
        let mut diag = vec![0u8; 4 + SOCKID + 24];
        diag[0] = libc::AF_INET6 as u8;
        diag[1] = TCP_LISTEN as u8;
        diag[4..6].copy_from_slice(&5432u16.to_be_bytes());
        diag[8..24].copy_from_slice(&"::ffff:10.0.0.5".parse::<Ipv6Addr>().expect("v6").octets());
        let mut datagram = message(SOCK_DIAG_BY_FAMILY, &diag);
        datagram.extend(message(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes()));
        datagram.extend(message(NLMSG_DONE, &0i32.to_ne_bytes()));
        let read: Vec<Message> = messages(&datagram).map(|m| m.expect("message")).collect();
        assert_eq!(
            read,
            [
                Message::Socket("10.0.0.5:5432".parse().expect("addr")),
                Message::Error(libc::EPERM),
                Message::Done
            ]
        );
        let mut cut = message(SOCK_DIAG_BY_FAMILY, &diag);
        cut.truncate(cut.len() - 8);
        assert!(messages(&cut).next().expect("one").is_err());
    }

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let len = NLMSG_HEADER + body.len();
        let mut out = (len as u32).to_ne_bytes().to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(body);
        out.resize(len.next_multiple_of(4), 0);
        out
    }

    #[test]
    fn the_request_asks_for_tcp_listeners_of_one_family() {
        let request = listeners_request(libc::AF_INET6 as u8, 7);
        assert_eq!(request.len(), 72);
        assert_eq!(
            u32::from_ne_bytes(request[0..4].try_into().expect("4 bytes")),
            72
        );
        assert_eq!(request[16], libc::AF_INET6 as u8);
        assert_eq!(request[17], libc::IPPROTO_TCP as u8);
        assert_eq!(
            u32::from_ne_bytes(request[20..24].try_into().expect("4 bytes")),
            1 << TCP_LISTEN
        );
    }
}
