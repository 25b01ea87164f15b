//! Newtypes so addresses with different meanings are never confused.

use std::{fmt, net::SocketAddr};

/// The agent's end of an accepted connection (its local address, as the gateway sees the peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The destination the agent asked for, before the nftables redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrigDst(pub SocketAddr);

/// Where the gateway connects on the agent's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamAddr(pub SocketAddr);

macro_rules! display_inner {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}
display_inner!(ClientAddr, OrigDst, UpstreamAddr);
