//! Is the current task an agent, and is the destination protected?

use core::ptr::read_volatile;

use aya_ebpf::{
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_uid_gid},
    programs::SockAddrContext,
};
use gateway_common::{Addr, DestKey, MAX_CGROUP_DEPTH};

use crate::maps::{AGENT_CGROUPS, AGENT_UIDS, BYPASS_MARK, PROTECTED};

#[inline(always)]
pub fn is_protected(addr: Addr, port: u32) -> bool {
    let exact = DestKey {
        addr: loopback_as_one(addr),
        port,
    };
    let any_address = DestKey { addr: [0; 4], port };
    PROTECTED.get_ptr(&exact).is_some() || PROTECTED.get_ptr(&any_address).is_some()
}

/// Every address of 127.0.0.0/8 is looked up as 127.0.0.1: a server listening on `0.0.0.0`
/// answers on all of them (userspace's `coverage::loopback_as_one` does the same).
#[inline(always)]
fn loopback_as_one(addr: Addr) -> Addr {
    let mapped = addr[0] == 0 && addr[1] == 0 && addr[2] == 0xffff_u32.to_be();
    if mapped && addr[3].to_ne_bytes()[0] == 127 {
        [0, 0, 0xffff_u32.to_be(), u32::from_ne_bytes([127, 0, 0, 1])]
    } else {
        addr
    }
}

#[inline(always)]
pub fn is_agent(ctx: &SockAddrContext) -> bool {
    socket_mark(ctx) != BYPASS_MARK.load() && is_agent_task()
}

/// The `SO_MARK` of the socket the program runs for.
#[inline(always)]
pub fn socket_mark(ctx: &SockAddrContext) -> u32 {
    // SAFETY: ctx->sk is a valid socket pointer in cgroup_sock_addr programs; `mark` is a
    // 32-bit readable field of bpf_sock.
    unsafe { read_volatile(&raw const (*(*ctx.sock_addr).__bindgen_anon_1.sk).mark) }
}

/// Whether the current task is an agent, by uid or by cgroup.
#[inline(always)]
pub fn is_agent_task() -> bool {
    let uid = bpf_get_current_uid_gid() as u32;
    if AGENT_UIDS.get_ptr(&uid).is_some() {
        return true;
    }
    in_agent_cgroup()
}

/// Walks the current task's cgroup v2 ancestors from just below the root downwards.
#[inline(always)]
fn in_agent_cgroup() -> bool {
    let mut level = 1;
    while level <= MAX_CGROUP_DEPTH {
        // SAFETY: helper with no pointer arguments.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if id == 0 {
            return false;
        }
        if AGENT_CGROUPS.get_ptr(&id).is_some() {
            return true;
        }
        level += 1;
    }
    false
}
