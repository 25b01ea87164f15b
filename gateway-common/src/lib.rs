//! Map keys and values shared by the eBPF programs and the gateway.
//!
//! Every type is `#[repr(C)]` with fields ordered so there is no implicit padding: the kernel
//! compares map keys byte for byte, so padding bytes would make equal keys differ.
#![no_std]

/// An address as 16 bytes in network order, held as the kernel holds `user_ip6`/`local_ip6`.
/// IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`), so a v4 connect, a v6 connect and a v4-mapped
/// v6 connect to the same host all produce the same key.
pub type Addr = [u32; 4];

/// `SO_MARK` is set by `connect4`/`connect6`; the nft `output` chain redirects what carries it.
pub const DEFAULT_MARK: u32 = 0x7467_0001;

/// The gateway's own upstream sockets carry this mark and are never intercepted.
pub const DEFAULT_BYPASS_MARK: u32 = 0x7467_0002;

/// How agent connections reach the gateway (the `REDIRECT_MODE` global).
pub mod redirect {
    /// `connect()` keeps its destination; the nftables `output` chain redirects the marked SYN.
    pub const NFTABLES: u32 = 0;
    /// `connect()` itself is pointed at the gateway's listener (no NAT, no conntrack);
    /// `getpeername()` still shows the original destination.
    pub const EBPF: u32 = 1;
}

/// Deepest cgroup level the programs walk when looking for an agent ancestor.
pub const MAX_CGROUP_DEPTH: i32 = 16;

/// Capacity of the per-connection maps (in-flight agent connections).
pub const MAX_CONNECTIONS: u32 = 65_536;

/// A protected destination. `addr == [0; 4]` protects the port on every address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DestKey {
    pub addr: Addr,
    /// Host byte order.
    pub port: u32,
}

/// One TCP connection as both ends see it: the agent's local address and the original
/// destination it asked for. The gateway rebuilds it from the peer address and `SO_ORIGINAL_DST`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub local_addr: Addr,
    pub remote_addr: Addr,
    /// Host byte order.
    pub local_port: u32,
    /// Host byte order.
    pub remote_port: u32,
}

/// Who opened an agent connection, captured in the `connect()` call itself.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnIdentity {
    pub cookie: u64,
    pub cgroup_id: u64,
    /// `bpf_ktime_get_boot_ns()` at connect (CLOCK_BOOTTIME, the clock of /proc starttime).
    pub connect_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub orig_addr: Addr,
    /// Host byte order.
    pub orig_port: u32,
    /// `AF_INET` or `AF_INET6`: the family of the agent's socket.
    pub family: u32,
    pub comm: [u8; 16],
    /// Where the socket really connects: the original destination with the nftables redirect,
    /// the gateway's listener with the eBPF redirect. Flow keys use this address.
    pub conn_addr: Addr,
    /// Host byte order.
    pub conn_port: u32,
    /// Explicit padding to a multiple of 8 bytes.
    pub _pad: u32,
}

/// `sizeof(sockaddr_un.sun_path)`.
pub const UNIX_PATH_LEN: usize = 108;

/// A protected unix socket path as the `connect_unix` program looks it up: the bytes up to the
/// first NUL, zero-filled to the full length, so each path has exactly one key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnixPathKey {
    pub path: [u8; UNIX_PATH_LEN],
}

/// Where an agent's `connect()` to a protected unix path is pointed: the gateway's socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixRedirect {
    pub path: [u8; UNIX_PATH_LEN],
    /// Bytes of `path` in use (no NUL), 1..=107.
    pub len: u32,
}

/// Indexes into the `STATS` per-CPU array.
pub mod stats {
    pub const MARKED: u32 = 0;
    pub const MARK_FAILED: u32 = 1;
    pub const FLOWS_TRACKED: u32 = 2;
    pub const FLOWS_CLOSED: u32 = 3;
    /// Agents' connects that reached a protected server's unix socket by another name.
    pub const UNIX_REFUSED: u32 = 4;
    pub const LEN: u32 = 5;
}

/// Values of the `UNIX_SERVERS` map: whose connects to that server socket are refused.
pub mod unix_server {
    /// An agent's (uid or cgroup selection).
    pub const AGENTS: u8 = 1;
    /// Anyone's: the gateway's startup check that the hook runs on this kernel.
    pub const EVERYONE: u8 = 2;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, repr(C), no padding (checked by the size tests below).
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::DestKey {}
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::FlowKey {}
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::ConnIdentity {}
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::UnixPathKey {}
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::UnixRedirect {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn shared_types_have_no_padding() {
        assert_eq!(size_of::<DestKey>(), 16 + 4);
        assert_eq!(size_of::<FlowKey>(), 16 + 16 + 4 + 4);
        assert_eq!(
            size_of::<ConnIdentity>(),
            3 * 8 + 4 * 4 + 16 + 4 + 4 + 16 + 16 + 4 + 4
        );
        assert_eq!(size_of::<UnixPathKey>(), UNIX_PATH_LEN);
        assert_eq!(size_of::<UnixRedirect>(), UNIX_PATH_LEN + 4);
    }
}
