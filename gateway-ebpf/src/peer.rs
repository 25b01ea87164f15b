//! getpeername4/getpeername6: with the eBPF redirect the socket is connected to the gateway's
//! listener; the agent is still shown the destination it asked for.

use aya_ebpf::{helpers::bpf_get_socket_cookie, programs::SockAddrContext, EbpfContext};
use gateway_common::{redirect, ConnIdentity};

use crate::{
    agent::socket_mark,
    maps::{CONNECTS, CONNECT_MARK, REDIRECT_MODE},
};

pub fn try_getpeername(ctx: &SockAddrContext, ipv6: bool) {
    if REDIRECT_MODE.load() != redirect::EBPF {
        return;
    }
    // connect4/connect6 mark an agent's socket before recording it, and record none they could
    // not mark: a socket without the mark has no record, and is answered without its cookie
    // being made and looked up (a fifth of the programs' cost per non-agent connect). A process
    // that changes its socket's mark later changes only what its own getpeername shows.
    if socket_mark(ctx) != CONNECT_MARK.load() {
        return;
    }
    // SAFETY: bpf_get_socket_cookie is valid for cgroup_sock_addr programs.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let Some(identity) = CONNECTS.get_ptr(&cookie) else {
        return;
    };
    // SAFETY: the pointer came from a successful lookup; ConnIdentity is Copy.
    let identity: ConnIdentity = unsafe { *identity };
    let user_port = u32::from((identity.orig_port as u16).to_be());
    // SAFETY: user_ip4/user_ip6/user_port are writable in getpeername4/6 with 32-bit stores.
    unsafe {
        let sa = &mut *ctx.sock_addr;
        if ipv6 {
            sa.user_ip6[0] = identity.orig_addr[0];
            sa.user_ip6[1] = identity.orig_addr[1];
            sa.user_ip6[2] = identity.orig_addr[2];
            sa.user_ip6[3] = identity.orig_addr[3];
        } else {
            sa.user_ip4 = identity.orig_addr[3];
        }
        sa.user_port = user_port;
    }
}
