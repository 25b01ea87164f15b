//! Tollgate's kernel side: recognise agent connections to protected destinations, mark them for
//! the nftables redirect and remember who opened them.
//!
//! Entry points are thin; the work is in `try_*` functions in the modules below.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod agent;
#[cfg(target_arch = "bpf")]
mod connect;
#[cfg(target_arch = "bpf")]
mod flows;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod peer;
#[cfg(target_arch = "bpf")]
mod unix_peer;

#[cfg(target_arch = "bpf")]
mod entry {
    use aya_ebpf::{
        macros::{cgroup_sock, cgroup_sock_addr, lsm, sock_ops},
        programs::{LsmContext, SockAddrContext, SockContext, SockOpsContext},
    };

    /// Allow the syscall to proceed (cgroup program return value).
    const ALLOW: i32 = 1;

    #[cgroup_sock_addr(connect4)]
    pub fn tollgate_connect4(ctx: SockAddrContext) -> i32 {
        crate::connect::try_connect4(&ctx).unwrap_or_else(|verdict| verdict)
    }

    #[cgroup_sock_addr(connect6)]
    pub fn tollgate_connect6(ctx: SockAddrContext) -> i32 {
        crate::connect::try_connect6(&ctx).unwrap_or_else(|verdict| verdict)
    }

    #[cgroup_sock_addr(getpeername4)]
    pub fn tollgate_getpeername4(ctx: SockAddrContext) -> i32 {
        crate::peer::try_getpeername(&ctx, false);
        ALLOW
    }

    #[cgroup_sock_addr(getpeername6)]
    pub fn tollgate_getpeername6(ctx: SockAddrContext) -> i32 {
        crate::peer::try_getpeername(&ctx, true);
        ALLOW
    }

    // Not named `sockops`: that collides with the section symbol in bpf-linker.
    #[sock_ops]
    pub fn tollgate_flow_events(ctx: SockOpsContext) -> u32 {
        crate::flows::try_flow_event(&ctx);
        ALLOW as u32
    }

    #[lsm(hook = "unix_stream_connect")]
    pub fn tollgate_unix_stream_connect(ctx: LsmContext) -> i32 {
        crate::unix_peer::try_unix_stream_connect(&ctx)
    }

    #[cgroup_sock(sock_release)]
    pub fn tollgate_sock_release(ctx: SockContext) -> i32 {
        crate::flows::try_release(&ctx);
        ALLOW
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// Host builds (`cargo test --workspace`, clippy) compile this crate as an empty binary.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
