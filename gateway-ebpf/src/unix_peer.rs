//! The backstop behind `connect_unix`: that hook sees the path an agent asks for, as text, so a
//! symlink, a hard link, a path relative to the socket's directory or `/proc/PID/root/...`
//! reaches the server by another name. This LSM hook runs once the kernel has resolved the
//! path, with the listening socket found: an agent's connect to a protected server's socket
//! is refused whatever name led there. The redirected connect reaches the gateway's socket,
//! which is not protected, and goes through.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf},
    programs::LsmContext,
};
use gateway_common::{stats, unix_server, UnixPathKey, UNIX_PATH_LEN};

use crate::{
    agent::is_agent_task,
    maps::{
        count, UNIX_ADDRESS_LEN_OFFSET, UNIX_ADDRESS_NAME_OFFSET, UNIX_SERVERS,
        UNIX_SOCK_ADDR_OFFSET,
    },
};

const EPERM: i32 = 1;

/// `sun_path` follows the 2-byte `sun_family` in `struct sockaddr_un`.
const SUN_PATH_OFFSET: usize = 2;

#[inline(always)]
pub fn try_unix_stream_connect(ctx: &LsmContext) -> i32 {
    // unix_stream_connect(struct sock *sock, struct sock *other, struct sock *newsk), then
    // the verdict of the LSM programs before this one.
    let previous: i32 = ctx.arg(3);
    if previous != 0 {
        return previous;
    }
    let other: *const u8 = ctx.arg(1);
    let refused = match bound_name(other) {
        // Not bound to a path (abstract or unnamed): no protected server is.
        Ok(None) => false,
        // SAFETY: a map value pointer is valid for the program's run.
        Ok(Some(key)) => match UNIX_SERVERS.get_ptr(&key).map(|v| unsafe { *v }) {
            Some(unix_server::EVERYONE) => true,
            Some(_) => is_agent_task(),
            None => false,
        },
        // Unreadable: an agent is refused rather than let through.
        Err(()) => is_agent_task(),
    };
    if refused {
        count(stats::UNIX_REFUSED);
        return -EPERM;
    }
    0
}

/// The path the listening socket was bound to, cut at its first NUL and zero-filled as the
/// map keys are; None for a socket bound to no path.
#[inline(always)]
fn bound_name(other: *const u8) -> Result<Option<UnixPathKey>, ()> {
    // SAFETY: `other` is the kernel's struct sock of a unix socket (struct unix_sock starts
    // with it); the reads go through bpf_probe_read_kernel, which fails rather than faults.
    let address: *const u8 = unsafe {
        bpf_probe_read_kernel(other.add(UNIX_SOCK_ADDR_OFFSET.load() as usize) as *const *const u8)
    }
    .map_err(|_| ())?;
    if address.is_null() {
        return Ok(None);
    }
    // `len` counts sun_family and the path with its NUL: read no further than that.
    // SAFETY: as above.
    let len: i32 = unsafe {
        bpf_probe_read_kernel(address.add(UNIX_ADDRESS_LEN_OFFSET.load() as usize) as *const i32)
    }
    .map_err(|_| ())?;
    let path_len = (len as usize).saturating_sub(SUN_PATH_OFFSET);
    if path_len == 0 {
        return Ok(None);
    }
    let mut key = UnixPathKey {
        path: [0; UNIX_PATH_LEN],
    };
    let name = UNIX_ADDRESS_NAME_OFFSET.load() as usize + SUN_PATH_OFFSET;
    let read = &mut key.path[..path_len.min(UNIX_PATH_LEN)];
    // SAFETY: as above; `read` lies within the address's allocation.
    unsafe { bpf_probe_read_kernel_buf(address.add(name), read) }.map_err(|_| ())?;
    if key.path[0] == 0 {
        return Ok(None);
    }
    let mut ended = false;
    for byte in key.path.iter_mut() {
        ended |= *byte == 0;
        if ended {
            *byte = 0;
        }
    }
    Ok(Some(key))
}
