//! One PostgreSQL session through the gateway, in phases: opening (encryption negotiation,
//! startup packet or cancel request) under the startup timeout, connecting upstream, then the
//! two pumps until either side ends. Every way it ends sets the connection's close record.

mod function_call;
mod hold;
mod pumps;
mod token_login;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use bytes::BytesMut;
use pgwire::messages::cancel::CancelRequest;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::Instant,
};

use self::{hold::Holds, pumps::PumpError};
use super::{
    cancel::CancelRegistry,
    enforce::{Enforcement, SessionEnforcement},
    errors::{sqlstate, ClientError},
    frame::{FrameError, FrameReader},
    hooks::{RequestHook, ResponseHook, SessionInfo},
    results::ResultTracker,
    settings::TaintedSettings,
    startup::{read_opening, Opening, StartupError, StartupInfo},
    state::SharedState,
    tls::{PgStream, UpstreamConnector},
};
use tokio_rustls::TlsAcceptor;

pub use function_call::BUILTIN_FUNCTIONS;
pub use token_login::{load_credentials, Credentials, CredentialsError, TokenLogin};

use crate::net as upstream;
use crate::{
    config::{Target, TargetAuth},
    identity::AgentIdentity,
    policy::IdentityFacts,
    proxy::{
        addrs::UpstreamAddr,
        busy_poll::ServerTurn,
        guard::{Outcome, SessionGuard},
    },
};

/// How long a forwarded cancel waits for the server to close its end.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// How long the server's last answers may take to pass once the client has left.
const CLOSE_DRAIN: Duration = Duration::from_secs(5);

/// Everything a session needs from the gateway.
pub struct PostgresSettings {
    pub startup_timeout: Duration,
    pub max_message_bytes: usize,
    pub upstream_connect_timeout: Duration,
    pub bypass_mark: u32,
    pub cancels: Arc<CancelRegistry>,
    pub request_hook: Arc<dyn RequestHook>,
    pub response_hook: Arc<dyn ResponseHook>,
    /// Answers agents' SSLRequests.
    pub agent_tls: TlsAcceptor,
    /// Per target name: how its server is reached.
    pub upstreams: HashMap<String, UpstreamConnector>,
    /// Per `auth = "token"` target name: token validation and the gateway's credentials.
    pub tokens: HashMap<String, Arc<TokenLogin>>,
    /// The policy, when one is configured.
    pub enforcement: Option<Arc<Enforcement>>,
    /// Every login and request is recorded there first.
    pub audit: crate::audit::Audit,
    /// Requests a rule sends for approval wait there.
    pub approvals: Option<Arc<crate::approval::Approvals>>,
    /// How long a request waits for approval.
    pub approval_timeout: Duration,
}

/// What the pumps share for one session.
pub struct SessionParts<'a> {
    session: &'a SessionInfo,
    state: &'a SharedState,
    request_hook: &'a dyn RequestHook,
    response_hook: &'a dyn ResponseHook,
    cancels: &'a Arc<CancelRegistry>,
    upstream: UpstreamAddr,
    /// The server connection is TLS, so the server can tell a client's channel-binding flag.
    upstream_tls: bool,
    max_message_bytes: usize,
    /// Settings whose values may come from classified data (with a policy in force).
    settings: Option<Arc<TaintedSettings>>,
    /// Where requests are recorded before they are forwarded (None only in tests of the
    /// session alone).
    audit: Option<&'a crate::audit::AuditLog>,
    /// Where requests wait for approval (None: a statement that needs it is refused).
    holds: Option<&'a Holds>,
    /// Whether the session waits for its server (what busy polling counts).
    server_turn: &'a ServerTurn,
}

/// How a running session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    ClientTerminated,
    ClientClosed,
    ServerClosed { server_sent_fatal: bool },
    StartupTimeout,
}

pub async fn serve<S: PgStream + 'static>(
    agent: S,
    settings: &PostgresSettings,
    target: &Target,
    upstream_addr: UpstreamAddr,
    agent_identity: AgentIdentity,
    guard: &mut SessionGuard,
) {
    let deadline = Instant::now() + settings.startup_timeout;
    let opened = tokio::time::timeout_at(deadline, open(agent, &settings.agent_tls)).await;
    let (mut agent, tls, opening) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err((agent, error))) => {
            if let Some(mut agent) = agent {
                return refuse_opening(&mut agent, error, guard).await;
            }
            guard.outcome = Outcome::Failed;
            guard.error = Some(error.to_string());
            return;
        }
        Err(_) => {
            guard.outcome = Outcome::Refused("startup packet not received in time");
            return;
        }
    };
    let target_name = target.name.as_str();
    let (startup, packet, startup_message) = match opening {
        Opening::Cancel(request) => return forward_cancel(request, settings, guard).await,
        Opening::Session {
            startup,
            packet,
            message,
        } => (startup, packet, message),
        Opening::EncryptionRequested => unreachable!("open() answers SSLRequest"),
    };
    if startup.replication_requested {
        let error = ClientError::fatal(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            "replication connections are not allowed through Tollgate",
        );
        send_fatal(&mut agent, &error).await;
        guard.outcome = Outcome::Refused("replication connection");
        return;
    }
    let token_login = match &target.auth {
        TargetAuth::Passthrough => None,
        TargetAuth::Token(_) => match settings.tokens.get(target_name) {
            Some(login) => Some(login.as_ref()),
            None => {
                guard.outcome = Outcome::Refused("token target without a validator");
                return;
            }
        },
    };
    let token = match token_login {
        None => None,
        Some(login) => {
            let admitted = token_login::admit(
                &mut agent,
                tls,
                &agent_identity,
                &startup,
                login,
                deadline,
                guard,
            )
            .await;
            match admitted {
                Some(token) => Some(token),
                None => return,
            }
        }
    };
    // With a token the server session runs as the gateway's user; records say so (the name
    // the agent gave is in the token.accepted record).
    let mut startup = startup;
    if let Some(login) = token_login {
        startup.user = login.credentials.user.clone();
    }
    let session = SessionInfo {
        conn_id: guard.id,
        target: target_name.to_owned(),
        agent: agent_identity,
        startup,
        tls,
        token,
    };
    log_startup(&session);
    if !record_login(&settings.audit, &session, guard) {
        let error = ClientError::fatal(
            crate::audit::UNAVAILABLE_SQLSTATE,
            "Tollgate: the audit log cannot record this session, so it was not started",
        );
        send_fatal(&mut agent, &error).await;
        return;
    }
    let enforcement = match &settings.enforcement {
        None => None,
        Some(enforcement) => match enforcement.admit(
            target_name,
            upstream_addr.0,
            &session.startup.database,
            identity_facts(&session),
            client_settings(&session.startup),
        ) {
            Ok(admitted) => Some(admitted),
            Err(error) => {
                record_refused_login(
                    guard,
                    &session.startup,
                    if session.token.is_some() {
                        "token"
                    } else {
                        "passthrough"
                    },
                    session.tls,
                    "no policy rule grants access",
                );
                send_fatal(&mut agent, &error).await;
                guard.outcome = Outcome::Refused("no policy rule grants access");
                return;
            }
        },
    };

    let (mut upstream, upstream_tls) =
        match connect_upstream(settings, target_name, upstream_addr).await {
            Ok(connected) => connected,
            Err(detail) => {
                let error = ClientError::fatal(
                    sqlstate::CONNECTION_FAILURE,
                    format!(
                    "Tollgate could not connect to the database server of target \"{target_name}\""
                ),
                );
                send_fatal(&mut agent, &error).await;
                guard.outcome = Outcome::UpstreamUnreachable;
                guard.error = Some(format!("{upstream_addr}: {detail}"));
                return;
            }
        };
    let state = SharedState::default();
    state.startup_forwarded();
    let upstream_buffered = match token_login {
        None => {
            let sent = async {
                upstream.write_all(&packet).await?;
                upstream.flush().await
            };
            if let Err(error) = sent.await {
                guard.outcome = Outcome::Failed;
                guard.error = Some(format!("upstream: {error}"));
                return;
            }
            guard.bytes_from_agent += packet.len() as u64;
            BytesMut::new()
        }
        Some(login) => {
            let logged_in = token_login::log_in(
                &mut agent,
                &mut upstream,
                &startup_message,
                &session,
                login,
                deadline,
                guard,
            )
            .await;
            state.mark_authenticated();
            match logged_in {
                Some(rest) => rest,
                None => return,
            }
        }
    };
    let (to_client, mut from_gateway) = tokio::sync::mpsc::unbounded_channel();
    let holds = settings.approvals.as_ref().map(|approvals| Holds {
        approvals: approvals.clone(),
        timeout: settings.approval_timeout,
        cancels: Arc::new(tokio::sync::watch::channel(0).0),
        to_client,
    });
    let server_turn = ServerTurn::on_this_worker();
    let parts = SessionParts {
        session: &session,
        settings: enforcement.as_ref().map(SessionEnforcement::settings),
        state: &state,
        request_hook: settings.request_hook.as_ref(),
        response_hook: settings.response_hook.as_ref(),
        cancels: &settings.cancels,
        upstream: upstream_addr,
        upstream_tls,
        max_message_bytes: settings.max_message_bytes,
        audit: Some(&settings.audit),
        holds: holds.as_ref(),
        server_turn: &server_turn,
    };
    let from_gateway = holds.as_ref().map(|_| &mut from_gateway);
    run(
        parts,
        enforcement,
        (agent, upstream, upstream_buffered),
        from_gateway,
        deadline,
        guard,
    )
    .await;
}

/// The settings the client gave in its startup packet (lower-case): they override what the
/// server would otherwise inherit from role, database and system settings.
fn client_settings(startup: &StartupInfo) -> HashSet<String> {
    let mut names: HashSet<String> = startup
        .settings
        .keys()
        .map(|name| name.to_ascii_lowercase())
        .collect();
    if startup.application_name.is_some() {
        names.insert("application_name".to_owned());
    }
    names
}

/// The opening under TLS if the agent asks for it: the stream to use from here on, whether it
/// is encrypted, and what the agent opened it for. On error the stream is returned if an
/// error can still be sent on it.
async fn open<S: PgStream + 'static>(
    mut tcp: S,
    acceptor: &TlsAcceptor,
) -> Result<(Box<dyn PgStream>, bool, Opening), (Option<Box<dyn PgStream>>, StartupError)> {
    match read_opening(&mut tcp).await {
        Ok(Opening::EncryptionRequested) => {}
        Ok(opening) => return Ok((Box::new(tcp), false, opening)),
        Err(error) => return Err((Some(Box::new(tcp)), error)),
    }
    if let Err(error) = tcp.write_all(b"S").await {
        return Err((None, StartupError::Frame(FrameError::Io(error))));
    }
    let mut tls: Box<dyn PgStream> = match acceptor.accept(tcp).await {
        Ok(stream) => Box::new(stream),
        Err(error) => return Err((None, StartupError::Frame(FrameError::Io(error)))),
    };
    match read_opening(&mut tls).await {
        Ok(Opening::EncryptionRequested) => Err((
            Some(tls),
            StartupError::Refused(ClientError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "SSLRequest inside TLS",
            )),
        )),
        Ok(opening) => Ok((tls, true, opening)),
        Err(error) => Err((Some(tls), error)),
    }
}

/// TCP connect (bypassing interception), then TLS as the target's `upstream_tls` says.
async fn connect_upstream(
    settings: &PostgresSettings,
    target: &str,
    address: UpstreamAddr,
) -> Result<(Box<dyn PgStream>, bool), String> {
    let timeout = settings.upstream_connect_timeout;
    let connecting = async {
        let tcp = upstream::connect(address.0, settings.bypass_mark)
            .await
            .map_err(|error| error.to_string())?;
        let _ = tcp.set_nodelay(true);
        match settings.upstreams.get(target) {
            Some(connector) => connector
                .negotiate(tcp, address.0.ip())
                .await
                .map_err(|error| error.to_string()),
            None => Err(format!("no upstream settings for target {target}")),
        }
    };
    tokio::time::timeout(timeout, connecting)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {timeout:?}")))
}

async fn run<A, U>(
    parts: SessionParts<'_>,
    mut enforcement: Option<SessionEnforcement>,
    (agent, upstream, upstream_buffered): (A, U, BytesMut),
    from_gateway: Option<&mut tokio::sync::mpsc::UnboundedReceiver<BytesMut>>,
    startup_deadline: Instant,
    guard: &mut SessionGuard,
) where
    A: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (agent_read, mut agent_write) = tokio::io::split(agent);
    let (upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let mut agent_frames = FrameReader::new(agent_read);
    let mut upstream_frames = FrameReader::with_buffered(upstream_read, upstream_buffered);
    let mut cancel_registration = None;
    let (mut from_agent, mut to_agent) = (0, 0);
    // With a policy in force, every result is matched to its statement's plan.
    let mut results = enforcement.as_ref().map(|_| ResultTracker::default());
    let result = {
        let frontend = pumps::frontend(
            &parts,
            enforcement.as_mut(),
            &mut agent_frames,
            &mut upstream_write,
            &mut from_agent,
        );
        let backend = pumps::backend(
            &parts,
            results.as_mut(),
            &mut upstream_frames,
            &mut agent_write,
            &mut to_agent,
            &mut cancel_registration,
            from_gateway,
        );
        let startup_timer = async {
            tokio::time::sleep_until(startup_deadline).await;
            if parts.state.ready() {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(frontend, backend);
        tokio::select! {
            end = &mut frontend => match end {
                Ok(end @ (SessionEnd::ClientTerminated | SessionEnd::ClientClosed)) => {
                    // The server answers what the client sent before it left, then closes;
                    // the client gets those answers whole, as it would directly.
                    let _ = tokio::time::timeout(CLOSE_DRAIN, &mut backend).await;
                    Ok(end)
                }
                other => other,
            },
            end = &mut backend => end,
            () = startup_timer => Ok(SessionEnd::StartupTimeout),
        }
    };
    // Waiting for nothing more, whatever is still written to the agent below.
    parts.server_turn.heard();
    guard.bytes_from_agent += from_agent;
    guard.bytes_to_agent += to_agent;
    // The state at the end says, for instance, that a client left mid-transaction (which the
    // server rolls back when the upstream connection closes below).
    tracing::info!(
        event = "session.end",
        conn_id = parts.session.conn_id,
        state = ?parts.state.state(),
        "postgres session ended"
    );
    let target = &parts.session.target;
    match result {
        Ok(SessionEnd::ClientTerminated | SessionEnd::ClientClosed) => {
            guard.outcome = Outcome::Closed
        }
        Ok(SessionEnd::ServerClosed { server_sent_fatal }) => {
            if !server_sent_fatal {
                send_fatal(&mut agent_write, &connection_lost(target)).await;
            }
            guard.outcome = Outcome::Closed;
        }
        Ok(SessionEnd::StartupTimeout) => {
            let error = ClientError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "canceling authentication due to timeout",
            );
            send_fatal(&mut agent_write, &error).await;
            guard.outcome = Outcome::Refused("startup not completed in time");
        }
        Err(PumpError::Client(error)) => {
            send_fatal(&mut agent_write, &error).await;
            guard.outcome = Outcome::ProtocolViolation;
            guard.error = Some(error.message);
        }
        Err(PumpError::Upstream(detail)) => {
            send_fatal(&mut agent_write, &connection_lost(target)).await;
            guard.outcome = Outcome::Failed;
            guard.error = Some(format!("upstream: {detail}"));
        }
        Err(PumpError::Agent(error)) => {
            guard.outcome = Outcome::Failed;
            guard.error = Some(format!("agent: {error}"));
        }
        Err(PumpError::Unmaskable(error)) => {
            send_fatal(&mut agent_write, &error).await;
            guard.outcome = Outcome::Failed;
            guard.error = Some(error.message);
        }
    }
    // Dropping the upstream halves closes the server connection: an open transaction is
    // rolled back by the server.
}

/// Who the session is, as policy matches identities.
fn identity_facts(session: &SessionInfo) -> IdentityFacts {
    let mut facts = IdentityFacts::default();
    match &session.agent {
        AgentIdentity::Process(process) => {
            facts.uid = Some(process.uid);
            facts.exe = process.exe.clone();
            facts.comm = Some(process.comm.clone());
            facts.cgroup = process.cgroup.clone();
        }
        AgentIdentity::Remote { source } => facts.remote = Some(*source),
    }
    if let Some(token) = &session.token {
        facts.token_subject = Some(token.subject.clone());
        facts.token_groups = token.groups.clone();
    }
    facts
}

fn connection_lost(target: &str) -> ClientError {
    ClientError::fatal(
        sqlstate::CONNECTION_FAILURE,
        format!("the connection to the database server of target \"{target}\" was lost"),
    )
}

async fn refuse_opening(
    agent: &mut Box<dyn PgStream>,
    error: StartupError,
    guard: &mut SessionGuard,
) {
    match error {
        StartupError::Refused(client_error) => {
            send_fatal(agent, &client_error).await;
            guard.outcome = Outcome::ProtocolViolation;
            guard.error = Some(client_error.message);
        }
        // PostgreSQL closes without a reply on an invalid startup packet length (it only
        // logs it): a client that wrote its Terminate first (node-postgres ending a
        // connection still being made) must not get an answer it cannot parse.
        StartupError::Frame(
            frame_error @ (FrameError::TooLarge { .. } | FrameError::BadLength(_)),
        ) => {
            let _ = agent.shutdown().await;
            guard.outcome = Outcome::ProtocolViolation;
            guard.error = Some(format!("invalid length of startup packet: {frame_error}"));
        }
        StartupError::Frame(other) => {
            guard.outcome = Outcome::Failed;
            guard.error = Some(other.to_string());
        }
        StartupError::Closed => guard.outcome = Outcome::Closed,
    }
}

async fn send_fatal<W: AsyncWrite + Unpin>(writer: &mut W, error: &ClientError) {
    let mut out = BytesMut::new();
    error.encode_into(&mut out);
    // Best effort: the connection closes either way.
    let _ = writer.write_all(&out).await;
    let _ = writer.shutdown().await;
}

/// A CancelRequest carrying a key this gateway issued goes to that session's server with the
/// server's own secret; any other key is dropped, as PostgreSQL does, without a reply.
async fn forward_cancel(
    request: CancelRequest,
    settings: &PostgresSettings,
    guard: &mut SessionGuard,
) {
    let Some(route) = settings.cancels.route(&request) else {
        guard.outcome = Outcome::Refused("cancel request with an unknown key");
        return;
    };
    guard.target = Some(route.target.clone());
    if let Some(withdraw) = &route.withdraw {
        withdraw.send_modify(|cancels| *cancels = cancels.wrapping_add(1));
    }
    let result = async {
        let mut upstream = upstream::connect(route.upstream.0, settings.bypass_mark).await?;
        upstream.write_all(&route.upstream_request()).await?;
        // The server closes once it has read the request.
        let mut rest = Vec::new();
        upstream.read_to_end(&mut rest).await.map(|_| ())
    };
    match tokio::time::timeout(CANCEL_WAIT, result).await {
        Ok(Ok(())) => {
            tracing::info!(
                event = "cancel.forwarded",
                conn_id = guard.id,
                cancelled_conn_id = route.conn_id,
                target = %route.target,
                backend_pid = route.pid,
                "cancel request forwarded"
            );
            guard.outcome = Outcome::CancelForwarded;
        }
        Ok(Err(error)) => {
            guard.outcome = Outcome::UpstreamUnreachable;
            guard.error = Some(format!("{}: {error}", route.upstream));
        }
        Err(_) => {
            guard.outcome = Outcome::UpstreamUnreachable;
            guard.error = Some(format!("{}: cancel not acknowledged", route.upstream));
        }
    }
}

/// A login refused before the session started (a bad token, no policy rule for the agent),
/// for the audit log.
pub(super) fn record_refused_login(
    guard: &SessionGuard,
    startup: &StartupInfo,
    auth: &str,
    tls: bool,
    reason: &str,
) {
    let Some(audit) = &guard.audit else {
        return;
    };
    let printable = crate::identity::printable;
    audit.record_anyway(crate::audit::Event::LoginDecided(
        crate::audit::event::LoginDecided {
            conn_id: guard.id,
            target: guard.target.clone().unwrap_or_default(),
            db_user: printable(&startup.user),
            database: printable(&startup.database),
            auth: auth.to_owned(),
            tls,
            token_subject: None,
            token_groups: Vec::new(),
            accepted: false,
            reason: Some(reason.to_owned()),
        },
    ));
}

/// The login as the audit log keeps it; false (the session is refused) when it cannot.
fn record_login(
    audit: &crate::audit::AuditLog,
    session: &SessionInfo,
    guard: &mut SessionGuard,
) -> bool {
    let printable = crate::identity::printable;
    let login = crate::audit::event::LoginDecided {
        conn_id: session.conn_id,
        target: session.target.clone(),
        db_user: printable(&session.startup.user),
        database: printable(&session.startup.database),
        auth: match session.token {
            Some(_) => "token",
            None => "passthrough",
        }
        .to_owned(),
        tls: session.tls,
        token_subject: session.token.as_ref().map(|t| printable(&t.subject)),
        token_groups: session
            .token
            .as_ref()
            .map(|t| t.groups.iter().map(|g| printable(g)).collect())
            .unwrap_or_default(),
        accepted: true,
        reason: None,
    };
    match audit.append(crate::audit::Event::LoginDecided(login)) {
        Ok(_) => true,
        Err(error) => {
            guard.outcome = Outcome::Refused("the audit log cannot be written");
            guard.error = Some(error.to_string());
            false
        }
    }
}

fn log_startup(session: &SessionInfo) {
    let startup = &session.startup;
    let settings: Vec<String> = startup
        .settings
        .iter()
        .map(|(name, value)| crate::identity::printable(&format!("{name}={value}")))
        .collect();
    tracing::info!(
        event = "session.startup",
        conn_id = session.conn_id,
        target = %session.target,
        db_user = %crate::identity::printable(&startup.user),
        database = %crate::identity::printable(&startup.database),
        application_name = startup.application_name.as_deref().map(crate::identity::printable),
        tls = session.tls,
        settings = %settings.join(" "),
        "postgres session started"
    );
}

#[cfg(test)]
mod tests;
