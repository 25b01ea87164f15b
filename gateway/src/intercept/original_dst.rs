//! `SO_ORIGINAL_DST`: the destination an agent asked for before the nftables redirect.

use std::{
    io,
    mem::{size_of, MaybeUninit},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::AsRawFd,
};

const SO_ORIGINAL_DST: libc::c_int = 80;
const IP6T_SO_ORIGINAL_DST: libc::c_int = 80;

/// Reads the pre-NAT destination of an accepted socket. `local` is the socket's own address and
/// selects the family (a v4 connection on a v6 listener is not used: listeners are v6-only).
pub fn original_dst(socket: &impl AsRawFd, local: SocketAddr) -> io::Result<SocketAddr> {
    match local {
        SocketAddr::V4(_) => {
            let addr: libc::sockaddr_in = getsockopt(socket, libc::SOL_IP, SO_ORIGINAL_DST)?;
            let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
            Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(addr.sin_port),
            )))
        }
        SocketAddr::V6(_) => {
            let addr: libc::sockaddr_in6 =
                getsockopt(socket, libc::SOL_IPV6, IP6T_SO_ORIGINAL_DST)?;
            let ip = Ipv6Addr::from(addr.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(addr.sin6_port),
                0,
                addr.sin6_scope_id,
            )))
        }
    }
}

fn getsockopt<T: Copy>(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<T> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: value is a writable buffer of `len` bytes; the kernel writes at most `len` bytes.
    #[expect(
        unsafe_code,
        reason = "getsockopt(2) for SO_ORIGINAL_DST has no safe wrapper"
    )]
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            value.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != size_of::<T>() {
        return Err(io::Error::other(
            "SO_ORIGINAL_DST returned an unexpected address length",
        ));
    }
    // SAFETY: the kernel filled exactly size_of::<T>() bytes of a plain C struct.
    #[expect(unsafe_code, reason = "reading the struct the kernel filled")]
    let value = unsafe { value.assume_init() };
    Ok(value)
}
