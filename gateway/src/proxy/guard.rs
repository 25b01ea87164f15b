//! One close record per accepted connection, on every path: the guard logs on Drop.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

use super::{
    addrs::{ClientAddr, OrigDst},
    ProxyStats,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Never relayed; the reason names why (fail closed).
    Refused(&'static str),
    UpstreamUnreachable,
    /// Both sides finished normally.
    Closed,
    /// A socket error ended the relay.
    Failed,
    /// The client broke the protocol and was sent FATAL 08P01.
    ProtocolViolation,
    /// A CancelRequest was passed to the server.
    CancelForwarded,
    /// The task was dropped (forced shutdown) before it finished.
    Interrupted,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Refused(_) => "refused",
            Self::UpstreamUnreachable => "upstream_unreachable",
            Self::Closed => "closed",
            Self::Failed => "failed",
            Self::ProtocolViolation => "protocol_violation",
            Self::CancelForwarded => "cancel_forwarded",
            Self::Interrupted => "interrupted",
        }
    }
}

/// The agent's end as the close record names it.
#[derive(Debug, Clone)]
enum Client {
    Tcp(ClientAddr),
    /// A unix-socket agent: the server socket it asked for, e.g. `unix:/var/run/...`.
    Unix(String),
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => addr.fmt(f),
            Self::Unix(_) => f.write_str("unix"),
        }
    }
}

pub struct SessionGuard {
    pub id: u64,
    stats: Arc<ProxyStats>,
    started: Instant,
    client: Client,
    pub orig_dst: Option<OrigDst>,
    pub target: Option<String>,
    pub pid: Option<u32>,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub bytes_from_agent: u64,
    pub bytes_to_agent: u64,
    /// Where the close is recorded (None only in tests of the session alone).
    pub audit: Option<crate::audit::Audit>,
}

impl SessionGuard {
    pub fn new(stats: Arc<ProxyStats>, client: ClientAddr) -> Self {
        Self::with_client(stats, Client::Tcp(client))
    }

    /// A connection accepted on the gateway's socket for the protected unix socket `asked`.
    pub fn unix(stats: Arc<ProxyStats>, asked: &std::path::Path) -> Self {
        Self::with_client(stats, Client::Unix(format!("unix:{}", asked.display())))
    }

    fn with_client(stats: Arc<ProxyStats>, client: Client) -> Self {
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.live.fetch_add(1, Ordering::Relaxed);
        Self {
            id: stats.next_connection_id(),
            stats,
            started: Instant::now(),
            client,
            orig_dst: None,
            target: None,
            pid: None,
            outcome: Outcome::Interrupted,
            error: None,
            bytes_from_agent: 0,
            bytes_to_agent: 0,
            audit: None,
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let stats = &self.stats;
        stats.live.fetch_sub(1, Ordering::Relaxed);
        stats
            .bytes_from_agents
            .fetch_add(self.bytes_from_agent, Ordering::Relaxed);
        stats
            .bytes_to_agents
            .fetch_add(self.bytes_to_agent, Ordering::Relaxed);
        let orig_dst = match (&self.client, self.orig_dst) {
            (Client::Unix(asked), _) => asked.clone(),
            (Client::Tcp(_), orig_dst) => orig_dst.map(|d| d.to_string()).unwrap_or_default(),
        };
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        if let Some(audit) = &self.audit {
            audit.record_anyway(crate::audit::Event::ConnectionClosed(
                crate::audit::event::ConnectionClosed {
                    conn_id: self.id,
                    client: self.client.to_string(),
                    orig_dst: orig_dst.clone(),
                    target: self.target.clone(),
                    pid: self.pid,
                    outcome: self.outcome.as_str().to_owned(),
                    reason: match self.outcome {
                        Outcome::Refused(reason) => Some(reason.to_owned()),
                        _ => None,
                    },
                    error: self.error.clone(),
                    bytes_from_agent: self.bytes_from_agent,
                    bytes_to_agent: self.bytes_to_agent,
                    duration_ms: duration_ms as u64,
                },
            ));
        }
        if let Outcome::Refused(reason) = self.outcome {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                event = "connection.close",
                conn_id = self.id,
                client = %self.client,
                orig_dst,
                outcome = self.outcome.as_str(),
                reason,
                error = self.error.as_deref(),
                duration_ms,
                "connection refused"
            );
            return;
        }
        tracing::info!(
            event = "connection.close",
            conn_id = self.id,
            client = %self.client,
            orig_dst,
            target = self.target.as_deref().unwrap_or(""),
            pid = self.pid,
            outcome = self.outcome.as_str(),
            error = self.error.as_deref(),
            bytes_from_agent = self.bytes_from_agent,
            bytes_to_agent = self.bytes_to_agent,
            duration_ms,
            "connection closed"
        );
    }
}
