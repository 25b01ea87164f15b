//! The opening of a session answers what PostgreSQL answers, and nothing where it answers
//! nothing.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    postgres::{session::refuse_opening, startup::read_opening, tls::PgStream},
    proxy::{
        addrs::ClientAddr,
        guard::{Outcome, SessionGuard},
        ProxyStats,
    },
};

/// node-postgres ending a connection it is still making writes its Terminate before the
/// startup packet: the server reads `X\0\0\0` as an invalid length and closes silently.
#[tokio::test]
async fn a_terminate_in_place_of_the_startup_packet_gets_no_reply() {
    let (gateway_end, mut client) = tokio::io::duplex(1024);
    client.write_all(b"X\0\0\0\x04").await.unwrap();
    client.shutdown().await.unwrap();
    let mut agent: Box<dyn PgStream> = Box::new(gateway_end);
    let error = read_opening(&mut agent)
        .await
        .expect_err("an invalid startup length");
    let client_addr = ClientAddr("127.0.0.1:40000".parse().unwrap());
    let mut guard = SessionGuard::new(Arc::new(ProxyStats::default()), client_addr);
    refuse_opening(&mut agent, error, &mut guard).await;
    drop(agent);
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).await.unwrap();
    assert!(reply.is_empty(), "the client got {reply:?}");
    assert_eq!(guard.outcome, Outcome::ProtocolViolation);
}
