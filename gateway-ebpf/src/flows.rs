//! sock_ops and sock_release: key each agent connection by its flow once the local address is
//! known, and forget it when the socket closes, so the maps never hold stale entries.

use core::ptr::read_volatile;

use aya_ebpf::{
    helpers::bpf_get_socket_cookie,
    programs::{SockContext, SockOpsContext},
    EbpfContext,
};
use gateway_common::{stats, Addr, ConnIdentity, FlowKey};

use crate::maps::{count, CONNECTS, FLOWS};

const BPF_SOCK_OPS_TCP_CONNECT_CB: u32 = 3;
const BPF_SOCK_OPS_STATE_CB: u32 = 10;
const BPF_SOCK_OPS_STATE_CB_FLAG: i32 = 1 << 2;
const TCP_CLOSE: u32 = 7;
const AF_INET: u32 = 2;

pub fn try_flow_event(ctx: &SockOpsContext) {
    match ctx.op() {
        BPF_SOCK_OPS_TCP_CONNECT_CB => on_connect(ctx),
        BPF_SOCK_OPS_STATE_CB if ctx.arg(1) == TCP_CLOSE => on_close(ctx),
        _ => {}
    }
}

pub fn try_release(ctx: &SockContext) {
    // close() runs this before TCP has finished: a live connection is forgotten by the state
    // callback when it reaches TCP_CLOSE. Only a socket that is already closed here (its connect
    // failed before a SYN was sent) still holds a connect record nobody else will remove.
    // SAFETY: the context is valid for the program's run; `state` is readable in cgroup_sock.
    let state = unsafe { read_volatile(&raw const (*ctx.sock).state) };
    if state != TCP_CLOSE {
        return;
    }
    // SAFETY: bpf_get_socket_cookie is valid for cgroup_sock programs.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let _ = CONNECTS.remove(&cookie);
}

/// The SYN is about to be sent: the local address and port are now fixed.
fn on_connect(ctx: &SockOpsContext) {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let Some(identity) = CONNECTS.get_ptr(&cookie) else {
        return;
    };
    // SAFETY: the pointer came from a successful lookup; ConnIdentity is Copy.
    let identity: ConnIdentity = unsafe { *identity };
    let key = flow_key(ctx, &identity);
    if FLOWS.insert(&key, &identity, 0).is_ok() {
        count(stats::FLOWS_TRACKED);
    }
    // Ask for state-change callbacks so the close below runs for this socket.
    let _ = ctx.set_cb_flags(ctx.cb_flags() as i32 | BPF_SOCK_OPS_STATE_CB_FLAG);
}

/// Runs before the kernel releases the port, so the local address is still the connect's.
fn on_close(ctx: &SockOpsContext) {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let Some(identity) = CONNECTS.get_ptr(&cookie) else {
        return;
    };
    // SAFETY: as in on_connect.
    let identity: ConnIdentity = unsafe { *identity };
    let key = flow_key(ctx, &identity);
    let _ = FLOWS.remove(&key);
    let _ = CONNECTS.remove(&cookie);
    count(stats::FLOWS_CLOSED);
}

#[inline(always)]
fn flow_key(ctx: &SockOpsContext, identity: &ConnIdentity) -> FlowKey {
    // Both fields are read unconditionally and volatile: reading one or the other inside the branch lets LLVM
    // merge them into one load at a computed context offset, which the verifier rejects with
    // "dereference of modified ctx ptr R5 off=60 disallowed".
    let ops = ctx.ops;
    // SAFETY: the context is valid for the program's run; each read is a 32-bit context load
    // at a constant offset, volatile so LLVM can neither merge nor sink them.
    let (ip4, ip6) = unsafe {
        let ip6 = &raw const (*ops).local_ip6;
        (
            read_volatile(&raw const (*ops).local_ip4),
            [
                read_volatile(&raw const (*ip6)[0]),
                read_volatile(&raw const (*ip6)[1]),
                read_volatile(&raw const (*ip6)[2]),
                read_volatile(&raw const (*ip6)[3]),
            ],
        )
    };
    let local_addr: Addr = if ctx.family() == AF_INET {
        [0, 0, 0xffff_u32.to_be(), ip4]
    } else {
        ip6
    };
    FlowKey {
        local_addr,
        remote_addr: identity.conn_addr,
        local_port: ctx.local_port(),
        remote_port: identity.conn_port,
    }
}
