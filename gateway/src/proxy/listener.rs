//! Binds the redirect listener(s) and runs the accept loops.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use tokio::net::TcpListener;

use super::{
    addrs::{ClientAddr, OrigDst},
    handle_connection, ProxyContext,
};
use crate::{drain, intercept::original_dst::original_dst};

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// Binds every configured address on `port`, once per worker (`SO_REUSEPORT`: the kernel
/// spreads connections over the copies). IPv6 sockets are v6-only so each family has its own
/// listener (and `SO_ORIGINAL_DST` is asked in the right family). `mark` goes on every packet
/// the listener and its connections send: with it, Tollgate's raw chains keep the replies to
/// redirected agents tracked (connection tracking translates them back), whichever Tollgate
/// instance on the host redirected them.
pub fn bind(
    addresses: &[IpAddr],
    port: u16,
    mark: u32,
    workers: usize,
) -> Result<Vec<Vec<std::net::TcpListener>>, BindError> {
    let mut groups: Vec<Vec<std::net::TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    for ip in addresses {
        let addr = SocketAddr::new(*ip, port);
        for group in &mut groups {
            match bind_one(addr, mark).map_err(|source| BindError { addr, source }) {
                Ok(listener) => group.push(listener),
                // A host without IPv6 still serves IPv4 agents.
                Err(error)
                    if ip.is_ipv6() && error.source.kind() == io::ErrorKind::AddrNotAvailable =>
                {
                    tracing::warn!(%addr, "IPv6 unavailable; not listening on it");
                    break;
                }
                Err(error) => return Err(error),
            }
        }
    }
    Ok(groups)
}

fn bind_one(addr: SocketAddr, mark: u32) -> io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    // Accepted connections inherit it, and so does the SYN-ACK.
    socket.set_mark(mark)?;
    // Only sockets of the same user join the group: another user cannot share the port.
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Accepts until the drain starts; each connection gets its own task and drain watch.
pub async fn serve(listener: TcpListener, context: Arc<ProxyContext>, mut drain: drain::Watch) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = drain.signaled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let orig_dst = stream
                    .local_addr()
                    .and_then(|local| original_dst(&stream, local));
                let context = context.clone();
                let watch = drain.clone();
                tokio::spawn(async move {
                    handle_connection(
                        stream,
                        ClientAddr(peer),
                        orig_dst.map(OrigDst),
                        context,
                        watch,
                    )
                    .await;
                });
            }
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
