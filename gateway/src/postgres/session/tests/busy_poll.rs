//! The session's part in busy polling: it counts as waiting for its server from a write to the
//! server until the server's next message, and stops counting when it ends.

use std::time::Duration;

use bytes::Bytes;
use pgwire::messages::{
    copy::{CopyData, CopyDone},
    simplequery::Query,
    PgWireFrontendMessage as F,
};

use super::{fake_server::Canned, start};
use crate::proxy::busy_poll::{self, AwaitingServers};

fn data(row: &'static str) -> F {
    F::CopyData(CopyData::new(Bytes::from_static(row.as_bytes())))
}

fn copy() -> F {
    F::Query(Query::new("COPY notes FROM STDIN".into()))
}

/// Bounded: the session forwards what it read within a few turns of the runtime.
async fn until_waiting(count: &AwaitingServers, sessions: u32) {
    for _ in 0..500 {
        if count.waiting() == sessions {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} sessions counted, not {sessions}", count.waiting());
}

#[tokio::test]
async fn a_session_waits_for_its_server_from_a_write_to_its_next_message() {
    // Waits never expire here, so only the session's own calls move the count.
    let count = AwaitingServers::with_window(Duration::from_secs(3600));
    busy_poll::start(Duration::from_millis(1), count.clone());
    let mut session = start(None, Canned::default().copy_in("COPY notes FROM STDIN", 2)).await;
    assert_eq!(count.waiting(), 0, "logged in, nothing asked");
    session.client.send(vec![copy()]).await;
    assert_eq!(session.client.next_line().await, "G");
    assert_eq!(count.waiting(), 0, "the server answered");
    // The server answers no CopyData: the session waits until CopyDone is answered.
    session.client.send(vec![data("1\ta\n")]).await;
    until_waiting(&count, 1).await;
    session
        .client
        .send(vec![F::CopyDone(CopyDone::new())])
        .await;
    assert_eq!(session.client.until_ready(1).await, ["C COPY 1", "Z I"]);
    assert_eq!(count.waiting(), 0, "answered");
    // A session that ends while it waits stops counting.
    session.client.send(vec![copy()]).await;
    assert_eq!(session.client.next_line().await, "G");
    session.client.send(vec![data("2\tb\n")]).await;
    until_waiting(&count, 1).await;
    session.client.shut_write().await;
    session.ended.await.expect("session task");
    assert_eq!(count.waiting(), 0, "the session ended");
}
