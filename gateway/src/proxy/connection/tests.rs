//! `handle_connection` over real loopback sockets with a fake attribution map: the original
//! destination is passed in, so no kernel (BPF, nftables, SO_ORIGINAL_DST) is needed.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Mutex},
    time::Duration,
};

use gateway_common::{ConnIdentity, FlowKey};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::oneshot,
    task::JoinHandle,
};

use super::*;
use crate::{
    config::{parse, Config},
    intercept::Attribution,
    proxy::ProxyStats,
};

/// Every await in these tests is bounded: a bug fails the test instead of hanging it.
const STEP: Duration = Duration::from_secs(5);

async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// Attribution backed by a map the test fills in, standing in for the kernel's flow map.
#[derive(Default)]
struct FakeAttribution {
    flows: Mutex<HashMap<FlowKey, ConnIdentity>>,
}

impl FakeAttribution {
    fn insert(&self, client: SocketAddr, orig_dst: SocketAddr, identity: ConnIdentity) {
        self.flows
            .lock()
            .expect("attribution lock")
            .insert(flow_key(client, orig_dst), identity);
    }
}

impl Attribution for FakeAttribution {
    fn lookup(&self, flow: &FlowKey) -> Option<ConnIdentity> {
        self.flows
            .lock()
            .expect("attribution lock")
            .get(flow)
            .copied()
    }
}

/// What the kernel would have recorded for an agent `psql` process.
fn agent_identity() -> ConnIdentity {
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"psql");
    ConnIdentity {
        cookie: 7,
        cgroup_id: 4242,
        connect_ns: 1_000_000_000,
        // Not present under the fake proc root, so nothing real is read.
        tgid: 4_000_001,
        tid: 4_000_001,
        uid: 1000,
        gid: 1000,
        comm,
        ..ConnIdentity::default()
    }
}

/// A proc root that holds no process directories.
fn empty_proc_root() -> PathBuf {
    std::env::temp_dir().join(format!(
        "tollgate-connection-tests-empty-proc-{}",
        std::process::id()
    ))
}

/// One target protecting `destination`, plus `agents` (a TOML body for `[agents]`).
fn config_for(destination: SocketAddr, agents: &str) -> Config {
    // The harness gives each test a state directory of its own.
    let text = format!(
        r#"
[gateway]
upstream_connect_timeout_ms = 2000

[agents]
{agents}

[[targets]]
name = "echo-db"
kind = "object_store"
destinations = ["{destination}"]
"#
    );
    match parse(Path::new("connection-test.toml"), &text) {
        Ok(config) => config,
        Err(error) => panic!("test config is valid: {error}\n{text}"),
    }
}

struct Harness {
    context: Arc<ProxyContext>,
    attribution: Arc<FakeAttribution>,
    stats: Arc<ProxyStats>,
    /// The state directory (audit log, certificate), removed with the harness.
    audit_root: std::path::PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.audit_root);
    }
}

fn harness(mut config: Config) -> Harness {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let audit_root = std::env::temp_dir().join(format!(
        "tollgate-connection-audit-{}-{n}",
        std::process::id()
    ));
    // The appliance certificate is generated here too, and removed with it.
    config.gateway.tls.state_dir = audit_root.clone();
    config.audit.dir = audit_root.join("audit");
    config.audit.key_file = audit_root.join("audit-key");
    let audit = crate::audit::AuditLog::open(&config.audit).expect("audit log");
    let attribution = Arc::new(FakeAttribution::default());
    let stats = Arc::new(ProxyStats::default());
    let proc_root = empty_proc_root();
    assert!(
        !proc_root.join("4000001").exists(),
        "the fake proc root must not hold the agent pid"
    );
    let postgres = crate::app::postgres_settings(&config, &audit).expect("TLS settings");
    let context = Arc::new(ProxyContext {
        config: Arc::new(config),
        attribution: attribution.clone(),
        stats: stats.clone(),
        proc_root,
        postgres,
        coverage: Default::default(),
        audit,
    });
    Harness {
        context,
        attribution,
        stats,
        audit_root,
    }
}

/// What the upstream saw on its one connection.
struct UpstreamReport {
    received: Vec<u8>,
}

/// An upstream that accepts one connection, echoes what it reads, and after the client's EOF
/// sends `TRAILER` and closes: the trailer proves the half-close reached it.
const TRAILER: &[u8] = b"bye";

async fn echo_upstream() -> (
    SocketAddr,
    JoinHandle<UpstreamReport>,
    oneshot::Receiver<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo upstream");
    let addr = listener.local_addr().expect("echo upstream address");
    let (eof_tx, eof_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let (mut stream, _) = within("upstream accept", listener.accept())
            .await
            .expect("upstream accept");
        let mut received = Vec::new();
        let mut buffer = [0u8; 8192];
        loop {
            let n = within("upstream read", stream.read(&mut buffer))
                .await
                .expect("upstream read");
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buffer[..n]);
            within("upstream echo", stream.write_all(&buffer[..n]))
                .await
                .expect("upstream echo");
        }
        let _ = eof_tx.send(());
        within("upstream trailer", stream.write_all(TRAILER))
            .await
            .expect("upstream trailer");
        within("upstream shutdown", stream.shutdown())
            .await
            .expect("upstream shutdown");
        UpstreamReport { received }
    });
    (addr, task, eof_rx)
}

/// A listener whose address is protected but which must never see a connection.
async fn silent_upstream() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind silent upstream")
}

async fn assert_never_connected(listener: &TcpListener) {
    // A connection the gateway made would already sit completed in the accept queue.
    if let Ok(accepted) = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await
    {
        panic!("the upstream was connected to: {accepted:?}");
    }
}

/// An address with nothing listening on it.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind to find a free port");
    let addr = listener.local_addr().expect("free port address");
    drop(listener);
    addr
}

/// A connected (agent, gateway side) pair; the peer address is the agent's local address.
async fn agent_connection() -> (TcpStream, TcpStream, ClientAddr) {
    let gateway = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway listener");
    let gateway_addr = gateway.local_addr().expect("gateway address");
    let (agent, accepted) = within("agent connect", async {
        tokio::join!(TcpStream::connect(gateway_addr), gateway.accept())
    })
    .await;
    let agent = agent.expect("agent connect");
    let (accepted, peer) = accepted.expect("gateway accept");
    assert_eq!(peer, agent.local_addr().expect("agent address"));
    (agent, accepted, ClientAddr(peer))
}

/// Runs `handle_connection` in its own task, as the listener does.
fn spawn_handler(
    accepted: TcpStream,
    client: ClientAddr,
    orig_dst: io::Result<OrigDst>,
    context: Arc<ProxyContext>,
) -> (JoinHandle<()>, drain::Signal) {
    let (signal, watch) = drain::channel();
    let task = tokio::spawn(handle_connection(
        accepted, client, orig_dst, context, watch,
    ));
    (task, signal)
}

async fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    within("agent read to EOF", stream.read_to_end(&mut out))
        .await
        .expect("agent read to EOF");
    out
}

fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Checks the counters once the handler task has finished (the guard has been dropped).
fn assert_stats(stats: &ProxyStats, accepted: u64, refused: u64, from_agents: u64, to_agents: u64) {
    let snapshot = stats.snapshot();
    assert_eq!(load(&stats.accepted), accepted, "accepted: {snapshot}");
    assert_eq!(load(&stats.refused), refused, "refused: {snapshot}");
    assert_eq!(load(&stats.live), 0, "live after close: {snapshot}");
    assert_eq!(
        load(&stats.bytes_from_agents),
        from_agents,
        "bytes_from_agents: {snapshot}"
    );
    assert_eq!(
        load(&stats.bytes_to_agents),
        to_agents,
        "bytes_to_agents: {snapshot}"
    );
}

/// The agent sends a short message and reads its echo, then a large payload while reading,
/// then half-closes. Returns what the agent sent and what it received before EOF.
async fn converse(agent: TcpStream, upstream_eof: oneshot::Receiver<()>) -> (Vec<u8>, Vec<u8>) {
    let mut agent = agent;
    let mut sent = Vec::new();
    let mut received = Vec::new();

    // Round trip: proves both directions are relayed while the connection stays open.
    let ping = b"Q\0\0\0\x0dselect 1\0";
    within("agent write ping", agent.write_all(ping))
        .await
        .expect("agent write ping");
    sent.extend_from_slice(ping);
    let mut echo = vec![0u8; ping.len()];
    within("agent read ping echo", agent.read_exact(&mut echo))
        .await
        .expect("agent read ping echo");
    assert_eq!(&echo, ping, "echo of the first message");
    received.extend_from_slice(&echo);

    // More than one relay buffer, written and read concurrently so neither side blocks.
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut read_half, mut write_half) = agent.into_split();
    let writer = async {
        write_half.write_all(&payload).await?;
        write_half.shutdown().await?;
        Ok::<_, io::Error>(write_half)
    };
    let reader = async {
        let mut rest = Vec::new();
        read_half.read_to_end(&mut rest).await?;
        Ok::<_, io::Error>(rest)
    };
    let (write_half, rest) = within("agent payload, half-close and EOF", async {
        tokio::join!(writer, reader)
    })
    .await;
    let _write_half = write_half.expect("agent write payload and shutdown");
    let rest = rest.expect("agent read until EOF");
    sent.extend_from_slice(&payload);
    received.extend_from_slice(&rest);

    // The trailer is only sent after the upstream saw EOF, so seeing it proves the order
    // client shutdown -> upstream EOF -> client EOF.
    within("upstream saw EOF", upstream_eof)
        .await
        .expect("upstream reported EOF");
    (sent, received)
}

fn expected_reply(sent: &[u8]) -> Vec<u8> {
    let mut reply = sent.to_vec();
    reply.extend_from_slice(TRAILER);
    reply
}

#[tokio::test]
async fn attributed_agent_is_relayed_both_ways_with_half_close() {
    let (upstream_addr, upstream, upstream_eof) = echo_upstream().await;
    let h = harness(config_for(upstream_addr, "uids = [1000]"));
    let (agent, accepted, client) = agent_connection().await;
    h.attribution
        .insert(client.0, upstream_addr, agent_identity());

    let (task, _signal) = spawn_handler(
        accepted,
        client,
        Ok(OrigDst(upstream_addr)),
        h.context.clone(),
    );
    let (sent, received) = converse(agent, upstream_eof).await;
    within("handler finishes", task)
        .await
        .expect("handler task");
    let report = within("upstream task", upstream)
        .await
        .expect("upstream task");

    assert_eq!(report.received.len(), sent.len(), "upstream got every byte");
    assert!(report.received == sent, "upstream got the bytes in order");
    assert_eq!(received.len(), sent.len() + TRAILER.len());
    assert!(
        received == expected_reply(&sent),
        "agent got echo + trailer"
    );
    assert_stats(
        &h.stats,
        1,
        0,
        sent.len() as u64,
        (sent.len() + TRAILER.len()) as u64,
    );
}

#[tokio::test]
async fn remote_source_without_attribution_is_relayed() {
    let (upstream_addr, upstream, upstream_eof) = echo_upstream().await;
    let h = harness(config_for(
        upstream_addr,
        r#"remote_sources = ["127.0.0.0/8"]"#,
    ));
    let (agent, accepted, client) = agent_connection().await;

    let (task, _signal) = spawn_handler(
        accepted,
        client,
        Ok(OrigDst(upstream_addr)),
        h.context.clone(),
    );
    let (sent, received) = converse(agent, upstream_eof).await;
    within("handler finishes", task)
        .await
        .expect("handler task");
    let report = within("upstream task", upstream)
        .await
        .expect("upstream task");

    assert!(report.received == sent, "upstream got every byte in order");
    assert!(
        received == expected_reply(&sent),
        "agent got echo + trailer"
    );
    assert_stats(
        &h.stats,
        1,
        0,
        sent.len() as u64,
        (sent.len() + TRAILER.len()) as u64,
    );
}

/// Runs a connection that must be refused: the agent reads EOF with no byte, the protected
/// upstream is never connected to, and the refusal is counted.
async fn assert_refused(
    h: &Harness,
    upstream: &TcpListener,
    accepted: TcpStream,
    mut agent: TcpStream,
    client: ClientAddr,
    orig_dst: io::Result<OrigDst>,
) {
    let (task, _signal) = spawn_handler(accepted, client, orig_dst, h.context.clone());
    within("handler finishes", task)
        .await
        .expect("handler task");
    let got = read_to_eof(&mut agent).await;
    assert!(got.is_empty(), "a refused agent got bytes: {got:?}");
    assert_never_connected(upstream).await;
    assert_stats(&h.stats, 1, 1, 0, 0);
}

#[tokio::test]
async fn unattributed_peer_is_refused() {
    let upstream = silent_upstream().await;
    let upstream_addr = upstream.local_addr().expect("upstream address");
    let h = harness(config_for(upstream_addr, "uids = [1000]"));
    let (agent, accepted, client) = agent_connection().await;
    // An entry for another flow (another client port) must not attribute this one.
    let other_client = SocketAddr::new(client.0.ip(), client.0.port().wrapping_add(1).max(1));
    h.attribution
        .insert(other_client, upstream_addr, agent_identity());

    assert_refused(
        &h,
        &upstream,
        accepted,
        agent,
        client,
        Ok(OrigDst(upstream_addr)),
    )
    .await;
}

#[tokio::test]
async fn attributed_connection_to_unprotected_destination_is_refused() {
    let protected = silent_upstream().await;
    let unprotected = silent_upstream().await;
    let protected_addr = protected.local_addr().expect("protected address");
    let unprotected_addr = unprotected.local_addr().expect("unprotected address");
    let h = harness(config_for(protected_addr, "uids = [1000]"));
    let (agent, accepted, client) = agent_connection().await;
    h.attribution
        .insert(client.0, unprotected_addr, agent_identity());

    assert_refused(
        &h,
        &unprotected,
        accepted,
        agent,
        client,
        Ok(OrigDst(unprotected_addr)),
    )
    .await;
    assert_never_connected(&protected).await;
}

#[tokio::test]
async fn remote_source_outside_the_configured_networks_is_refused() {
    let upstream = silent_upstream().await;
    let upstream_addr = upstream.local_addr().expect("upstream address");
    let h = harness(config_for(
        upstream_addr,
        r#"remote_sources = ["10.20.0.0/16"]"#,
    ));
    let (agent, accepted, client) = agent_connection().await;

    assert_refused(
        &h,
        &upstream,
        accepted,
        agent,
        client,
        Ok(OrigDst(upstream_addr)),
    )
    .await;
}

#[tokio::test]
async fn missing_original_destination_is_refused() {
    let upstream = silent_upstream().await;
    let upstream_addr = upstream.local_addr().expect("upstream address");
    let h = harness(config_for(upstream_addr, "uids = [1000]"));
    let (agent, accepted, client) = agent_connection().await;
    // Attributed for the protected destination, but the gateway cannot tell where it was going.
    h.attribution
        .insert(client.0, upstream_addr, agent_identity());

    assert_refused(
        &h,
        &upstream,
        accepted,
        agent,
        client,
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "SO_ORIGINAL_DST: no such conntrack entry",
        )),
    )
    .await;
}

#[tokio::test]
async fn unreachable_upstream_closes_the_agent_promptly() {
    let upstream_addr = closed_port().await;
    let h = harness(config_for(upstream_addr, "uids = [1000]"));
    let (mut agent, accepted, client) = agent_connection().await;
    h.attribution
        .insert(client.0, upstream_addr, agent_identity());

    let started = std::time::Instant::now();
    let (task, _signal) = spawn_handler(
        accepted,
        client,
        Ok(OrigDst(upstream_addr)),
        h.context.clone(),
    );
    let got = read_to_eof(&mut agent).await;
    within("handler finishes", task)
        .await
        .expect("handler task");
    assert!(got.is_empty(), "agent got bytes: {got:?}");
    // Connection refused on loopback is immediate; well under the 2 s connect timeout.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_stats(&h.stats, 1, 0, 0, 0);
}

#[tokio::test]
async fn upstream_override_is_where_the_gateway_connects() {
    // The agent asked for a protected destination nothing listens on; the target's
    // `upstream` sends the gateway to the echo server instead.
    let (echo_addr, upstream, upstream_eof) = echo_upstream().await;
    let asked_for = closed_port().await;
    let text = format!(
        r#"
[agents]
uids = [1000]

[[targets]]
name = "echo-db"
kind = "object_store"
destinations = ["{asked_for}"]
upstream = "{echo_addr}"
"#
    );
    let config = parse(Path::new("connection-test.toml"), &text).expect("valid test config");
    let h = harness(config);
    let (agent, accepted, client) = agent_connection().await;
    h.attribution.insert(client.0, asked_for, agent_identity());

    let (task, _signal) =
        spawn_handler(accepted, client, Ok(OrigDst(asked_for)), h.context.clone());
    let (sent, received) = converse(agent, upstream_eof).await;
    within("handler finishes", task)
        .await
        .expect("handler task");
    let report = within("upstream task", upstream)
        .await
        .expect("upstream task");
    assert!(report.received == sent);
    assert!(received == expected_reply(&sent));
    assert_stats(
        &h.stats,
        1,
        0,
        sent.len() as u64,
        (sent.len() + TRAILER.len()) as u64,
    );
}
