//! `xtask tcp-probe`: one TCP connection to a PostgreSQL port by a chosen path through the
//! kernel, for the end-to-end tests that prove each path is intercepted: a plain `connect()`,
//! TCP Fast Open (`sendto(MSG_FASTOPEN)` on an unconnected socket, no `connect()` call at
//! all) or io_uring (`IORING_OP_CONNECT`, no `connect()` syscall). It sends a startup packet
//! for user postgres and prints the first byte of the answer (`R`: the server, or the gateway
//! in front of it, answered).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
};

use anyhow::{bail, Context};
use socket2::{Domain, SockAddr, Socket, Type};

mod uring;

pub fn run(via: &str, addr: SocketAddr) -> anyhow::Result<()> {
    let startup = startup_packet();
    let mut stream: TcpStream = match via {
        "plain" => {
            let mut stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
            stream.write_all(&startup)?;
            stream
        }
        "fastopen" => {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
            // The startup packet rides on the SYN when the server has given a cookie;
            // without one the kernel still connects from this call.
            let sent = socket
                .send_to_with_flags(&startup, &SockAddr::from(addr), libc::MSG_FASTOPEN)
                .with_context(|| format!("sendto(MSG_FASTOPEN) {addr}"))?;
            let mut stream: TcpStream = socket.into();
            stream.write_all(&startup[sent..])?;
            stream
        }
        "io-uring" => {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
            uring::connect(&socket, &SockAddr::from(addr))
                .with_context(|| format!("io_uring connect {addr}"))?;
            let mut stream: TcpStream = socket.into();
            stream.write_all(&startup)?;
            stream
        }
        other => bail!("unknown path `{other}`: plain, fastopen or io-uring"),
    };
    let mut answer = [0u8; 1];
    stream
        .read_exact(&mut answer)
        .context("reading the answer")?;
    println!("{}", char::from(answer[0]));
    Ok(())
}

/// A StartupMessage (protocol 3.0) for user and database postgres.
fn startup_packet() -> Vec<u8> {
    let mut body = 196_608_u32.to_be_bytes().to_vec();
    for part in ["user", "postgres", "database", "postgres", ""] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}
