//! Connecting to the real server on the agent's behalf.

use std::{io, net::SocketAddr, time::Duration};

use tokio::net::{TcpSocket, TcpStream};

/// Connects with the bypass mark set before `connect()`, so the kernel programs never intercept
/// the gateway's own connection (a redirect loop), whatever uid or cgroup the gateway runs in.
pub async fn connect(addr: SocketAddr, bypass_mark: u32) -> io::Result<TcpStream> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_mark(bypass_mark)?;
    socket.set_nonblocking(true)?;
    TcpSocket::from_std_stream(socket.into())
        .connect(addr)
        .await
}

/// [`connect`] bounded by `timeout`; running out is a `TimedOut` error that says so.
pub async fn connect_within(
    addr: SocketAddr,
    bypass_mark: u32,
    timeout: Duration,
) -> io::Result<TcpStream> {
    tokio::time::timeout(timeout, connect(addr, bypass_mark))
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {timeout:?}"),
            ))
        })
}
