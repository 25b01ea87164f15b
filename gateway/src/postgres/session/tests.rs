//! The session loop in-process: the agent and the server are in-memory streams, the server a
//! scripted backend that answers as PostgreSQL does. Pipelining, partial batches, errors
//! mid-pipeline, denials and masking are checked here in milliseconds, without root; the
//! privileged suites prove the same against real servers and clients.

mod busy_poll;
mod client;
mod copy;
mod encodings;
mod fake_server;
mod function_call;
mod holds;
mod opening;
mod pipeline;
mod recorded;
mod tls;

use std::{collections::BTreeMap, collections::HashMap, sync::Arc, time::Duration};

use bytes::BytesMut;
use pgwire::messages::ProtocolVersion;
use tokio::{task::JoinHandle, time::Instant};

use self::{client::Client, fake_server::Canned};
use super::{run, SessionParts};
use crate::{
    identity::AgentIdentity,
    policy::{derived::DerivedStore, PolicyStore},
    postgres::{
        cancel::CancelRegistry,
        enforce::Enforcement,
        hooks::{RecordingHooks, SessionInfo},
        startup::StartupInfo,
        state::SharedState,
        tls::PgStream,
    },
    proxy::{
        addrs::{ClientAddr, UpstreamAddr},
        guard::{Outcome, SessionGuard},
        ProxyStats,
    },
};

/// Room in each in-memory stream: writes never wait on a reader unless a test fills it.
const STREAM_ROOM: usize = 1 << 20;

/// A policy for the scripted backend's tables: `patients.ssn` (OID 16400, attnum 2) is
/// classified and redacted; the agent may do anything but touch `secrets`.
pub const POLICY: &str = r#"version = 1
[[identities]]
id = "agent"
remote = ["127.0.0.0/8"]

[[classify]]
table = "public.patients"
columns = { ssn = "ssn" }

[masking]
ssn = "redact"

[[rules]]
id = "no-secrets"
effect = "deny"
tables = ["public.secrets"]

[[rules]]
id = "anything"
effect = "allow"
identities = ["agent"]
"#;

/// A running session: the agent's end, and the outcome the session ends with.
pub struct Session {
    pub client: Client,
    pub ended: JoinHandle<(Outcome, Option<String>)>,
}

impl Session {
    /// The outcome once the session has ended (bounded).
    pub async fn outcome(self) -> (Outcome, Option<String>) {
        drop(self.client);
        tokio::time::timeout(Duration::from_secs(5), self.ended)
            .await
            .expect("the session ends once the agent is gone")
            .expect("the session task does not panic")
    }
}

/// Starts a session after login against a scripted backend, with the policy if given.
pub async fn start(policy: Option<&str>, canned: Canned) -> Session {
    start_with(policy, canned, Agent::Plain).await
}

/// How the agent's side is carried.
pub enum Agent {
    Plain,
    /// TLS over a stream with this little room, so writes often find it full.
    Tls {
        room: usize,
    },
}

pub async fn start_with(policy: Option<&str>, canned: Canned, agent_side: Agent) -> Session {
    start_recording(policy, canned, agent_side, None).await
}

/// [`start_with`], recording the session's requests and answers in `audit`.
pub async fn start_recording(
    policy: Option<&str>,
    canned: Canned,
    agent_side: Agent,
    audit: Option<crate::audit::Audit>,
) -> Session {
    start_full(policy, canned, agent_side, audit, None).await
}

/// [`start`] where statements a rule sends for approval wait in `approvals` (up to
/// `timeout`); returns the session and what its CancelRequests would change.
pub async fn start_holding(
    policy: &str,
    canned: Canned,
    approvals: Arc<crate::approval::Approvals>,
    timeout: Duration,
) -> (Session, Arc<tokio::sync::watch::Sender<u64>>) {
    let cancels = Arc::new(tokio::sync::watch::channel(0).0);
    let holds = (approvals, timeout, cancels.clone());
    let session = start_full(Some(policy), canned, Agent::Plain, None, Some(holds)).await;
    (session, cancels)
}

type HoldSetup = (
    Arc<crate::approval::Approvals>,
    Duration,
    Arc<tokio::sync::watch::Sender<u64>>,
);

async fn start_full(
    policy: Option<&str>,
    canned: Canned,
    agent_side: Agent,
    audit: Option<crate::audit::Audit>,
    holds: Option<HoldSetup>,
) -> Session {
    let room = match agent_side {
        Agent::Plain => STREAM_ROOM,
        Agent::Tls { room } => room,
    };
    let (agent, agent_end) = tokio::io::duplex(room);
    let (acceptor, connector) = crate::postgres::tls::test_tls_pair();
    let tls = matches!(agent_side, Agent::Tls { .. });
    let (upstream, server_end) = tokio::io::duplex(STREAM_ROOM);
    tokio::spawn(fake_server::serve(server_end, canned));
    let (enforcement, state_dir) = policy.map(enforcement_for).unzip();
    let ended = tokio::spawn(async move {
        let agent: Box<dyn PgStream> = match tls {
            true => Box::new(acceptor.accept(agent).await.expect("TLS with the agent")),
            false => Box::new(agent),
        };
        let session = session_info();
        let state = SharedState::default();
        state.startup_forwarded();
        let hooks = Arc::new(RecordingHooks);
        let cancels = Arc::new(CancelRegistry::default());
        let (to_client, mut from_gateway) = tokio::sync::mpsc::unbounded_channel();
        let holds = holds.map(|(approvals, timeout, cancels)| super::Holds {
            approvals,
            timeout,
            cancels,
            to_client,
        });
        let parts = SessionParts {
            session: &session,
            state: &state,
            request_hook: hooks.as_ref(),
            response_hook: hooks.as_ref(),
            cancels: &cancels,
            upstream: UpstreamAddr("127.0.0.1:5432".parse().unwrap()),
            upstream_tls: false,
            max_message_bytes: 1 << 20,
            settings: enforcement.as_ref().map(|e| e.settings()),
            audit: audit.as_deref(),
            holds: holds.as_ref(),
            server_turn: &crate::proxy::busy_poll::ServerTurn::on_this_worker(),
        };
        let client = ClientAddr("127.0.0.1:40000".parse().unwrap());
        let mut guard = SessionGuard::new(Arc::new(ProxyStats::default()), client);
        let deadline = Instant::now() + Duration::from_secs(30);
        let from_gateway = holds.as_ref().map(|_| &mut from_gateway);
        run(
            parts,
            enforcement,
            (agent, upstream, BytesMut::new()),
            from_gateway,
            deadline,
            &mut guard,
        )
        .await;
        drop(state_dir);
        (guard.outcome, guard.error.take())
    });
    let agent_end: Box<dyn PgStream> = match tls {
        true => {
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
            Box::new(
                connector
                    .connect(name, agent_end)
                    .await
                    .expect("TLS to the gateway"),
            )
        }
        false => Box::new(agent_end),
    };
    let mut client = Client::new(agent_end);
    client.after_login().await;
    Session { client, ended }
}

fn session_info() -> SessionInfo {
    SessionInfo {
        conn_id: 1,
        target: "clinic".into(),
        agent: AgentIdentity::Remote {
            source: "127.0.0.1".parse().unwrap(),
        },
        startup: StartupInfo {
            protocol: ProtocolVersion::PROTOCOL3_0,
            user: "agent".into(),
            database: "clinic".into(),
            application_name: None,
            settings: BTreeMap::new(),
            other_options: Vec::new(),
            replication_requested: false,
        },
        tls: false,
        token: None,
    }
}

/// The policy's state directory, removed when the session is over.
struct StateDir(std::path::PathBuf);

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn enforcement_for(policy: &str) -> (crate::postgres::enforce::SessionEnforcement, StateDir) {
    let dir = std::env::temp_dir().join(format!(
        "tollgate-session-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("policy.toml"), policy).unwrap();
    let store = Arc::new(PolicyStore::open(&dir.join("policy.toml"), &dir).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    let derived = Arc::new(DerivedStore::open(&dir).unwrap());
    let enforcement = Arc::new(Enforcement::new(store, HashMap::new(), derived));
    let identity = crate::policy::IdentityFacts {
        remote: Some("127.0.0.1".parse().unwrap()),
        ..Default::default()
    };
    let enforcement = enforcement
        .admit(
            "clinic",
            "127.0.0.1:5432".parse().unwrap(),
            "clinic",
            identity,
            Default::default(),
        )
        .unwrap_or_else(|_| panic!("the policy admits the agent"));
    (enforcement, StateDir(dir))
}

static NEXT_DIR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
