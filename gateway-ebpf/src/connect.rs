//! `connect4`/`connect6`: mark agent connections to protected destinations and record who made them.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_setsockopt,
    },
    programs::SockAddrContext,
    EbpfContext,
};
use aya_log_ebpf::{debug, error};
use gateway_common::{redirect, stats, Addr, ConnIdentity};

use crate::{
    agent::{is_agent, is_protected},
    maps::{count, CONNECTS, CONNECT_MARK, LISTEN_PORT, REDIRECT_MODE},
};

const ALLOW: i32 = 1;
/// Refuse the `connect()` with EPERM: used when an agent connection could not be marked, so it
/// can never bypass the gateway.
const REFUSE: i32 = 0;

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const IPPROTO_TCP: u32 = 6;
const SOL_SOCKET: i32 = 1;
const SO_MARK: i32 = 36;

pub fn try_connect4(ctx: &SockAddrContext) -> Result<i32, i32> {
    // SAFETY: the context pointer is valid for the program's lifetime; fields are readable in connect4.
    let (protocol, ip4, user_port) = unsafe {
        let sa = &*ctx.sock_addr;
        (sa.protocol, sa.user_ip4, sa.user_port)
    };
    if protocol != IPPROTO_TCP {
        return Ok(ALLOW);
    }
    let addr: Addr = [0, 0, 0xffff_u32.to_be(), ip4];
    intercept(ctx, unspecified_to_loopback(addr), user_port, AF_INET)
}

pub fn try_connect6(ctx: &SockAddrContext) -> Result<i32, i32> {
    // SAFETY: as above; user_ip6 is read as four 32-bit loads, the access size the verifier allows.
    let (protocol, addr, user_port) = unsafe {
        let sa = &*ctx.sock_addr;
        let addr = [
            sa.user_ip6[0],
            sa.user_ip6[1],
            sa.user_ip6[2],
            sa.user_ip6[3],
        ];
        (sa.protocol, addr, sa.user_port)
    };
    if protocol != IPPROTO_TCP {
        return Ok(ALLOW);
    }
    intercept(ctx, unspecified_to_loopback(addr), user_port, AF_INET6)
}

/// The kernel connects `0.0.0.0`, `::` and `::ffff:0.0.0.0` to loopback; match them as the
/// loopback address they reach, or `connect(0.0.0.0:5432)` would slip past `127.0.0.1:5432`.
#[inline(always)]
fn unspecified_to_loopback(addr: Addr) -> Addr {
    let mapped_prefix = addr[0] == 0 && addr[1] == 0 && addr[2] == 0xffff_u32.to_be();
    if mapped_prefix && addr[3] == 0 {
        [0, 0, 0xffff_u32.to_be(), u32::from_ne_bytes([127, 0, 0, 1])]
    } else if addr == [0; 4] {
        [0, 0, 0, 1_u32.to_be()]
    } else {
        addr
    }
}

#[inline(always)]
fn intercept(ctx: &SockAddrContext, addr: Addr, user_port: u32, family: u32) -> Result<i32, i32> {
    // user_port holds the port in network order in its low 16 bits.
    let port = u32::from(u16::from_be(user_port as u16));
    if !is_protected(addr, port) || !is_agent(ctx) {
        return Ok(ALLOW);
    }

    let mut mark = CONNECT_MARK.load();
    // SAFETY: the option value points at a live u32 of the length passed.
    let set = unsafe {
        bpf_setsockopt(
            ctx.as_ptr(),
            SOL_SOCKET,
            SO_MARK,
            (&mut mark as *mut u32).cast(),
            core::mem::size_of::<u32>() as i32,
        )
    };
    if set != 0 {
        count(stats::MARK_FAILED);
        error!(
            ctx,
            "tollgate: SO_MARK failed ({}), refusing agent connect", set
        );
        return Err(REFUSE);
    }

    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: helpers valid in cgroup_sock_addr programs; the context is the socket's.
    let (cookie, cgroup_id, now) = unsafe {
        (
            bpf_get_socket_cookie(ctx.as_ptr()),
            bpf_get_current_cgroup_id(),
            bpf_ktime_get_boot_ns(),
        )
    };
    let identity = ConnIdentity {
        cookie,
        cgroup_id,
        connect_ns: now,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        orig_addr: addr,
        orig_port: port,
        family,
        comm: bpf_get_current_comm().unwrap_or_default(),
        conn_addr: addr,
        conn_port: port,
        _pad: 0,
    };
    let redirect_in_kernel = REDIRECT_MODE.load() == redirect::EBPF;
    let identity = if redirect_in_kernel {
        ConnIdentity {
            conn_addr: listener_addr(family, addr),
            conn_port: LISTEN_PORT.load(),
            ..identity
        }
    } else {
        identity
    };
    if CONNECTS.insert(&cookie, &identity, 0).is_err() {
        // Without a record the gateway cannot attribute the connection and would refuse it
        // anyway; refusing here tells the agent at once.
        count(stats::MARK_FAILED);
        return Err(REFUSE);
    }
    if redirect_in_kernel {
        point_at_listener(ctx, family, identity.conn_addr, identity.conn_port);
    }
    count(stats::MARKED);
    debug!(
        ctx,
        "tollgate: marked agent connect tgid={} port={}", identity.tgid, port
    );
    Ok(ALLOW)
}

/// The gateway's loopback listener in the family the agent's packets will use: IPv4 (also for
/// a v4-mapped destination on an IPv6 socket) or `::1`.
#[inline(always)]
fn listener_addr(family: u32, dest: Addr) -> Addr {
    let v4_mapped = dest[0] == 0 && dest[1] == 0 && dest[2] == 0xffff_u32.to_be();
    if family == AF_INET || v4_mapped {
        [0, 0, 0xffff_u32.to_be(), u32::from_ne_bytes([127, 0, 0, 1])]
    } else {
        [0, 0, 0, 1_u32.to_be()]
    }
}

/// Rewrites the connect() destination to the gateway's listener.
#[inline(always)]
fn point_at_listener(ctx: &SockAddrContext, family: u32, addr: Addr, port: u32) {
    let user_port = u32::from((port as u16).to_be());
    // SAFETY: user_ip4/user_ip6/user_port are writable in connect4/connect6 with 32-bit stores.
    unsafe {
        let sa = &mut *ctx.sock_addr;
        if family == AF_INET {
            sa.user_ip4 = addr[3];
        } else {
            sa.user_ip6[0] = addr[0];
            sa.user_ip6[1] = addr[1];
            sa.user_ip6[2] = addr[2];
            sa.user_ip6[3] = addr[3];
        }
        sa.user_port = user_port;
    }
}
