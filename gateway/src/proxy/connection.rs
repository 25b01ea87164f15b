//! One accepted connection, in explicit phases: attribute -> select target -> serve it by kind
//! (PostgreSQL at message level, object storage as a byte relay for now). Anything that cannot
//! be attributed is refused (fail closed).

use std::{io, net::SocketAddr, sync::Arc};

use gateway_common::ConnIdentity;

use tokio::net::TcpStream;

use super::{
    addrs::{ClientAddr, OrigDst, UpstreamAddr},
    guard::{Outcome, SessionGuard},
    relay::relay,
    ProxyContext,
};
use crate::net as upstream;
use crate::{
    config::{RedirectMode, Target, TargetKind},
    drain,
    identity::{read_process, AgentIdentity, ProcessIdentity},
    intercept::attribution::{flow_key, words_addr},
};

pub async fn handle_connection(
    agent: TcpStream,
    client: ClientAddr,
    orig_dst: io::Result<OrigDst>,
    context: Arc<ProxyContext>,
    _drain: drain::Watch,
) {
    let mut guard = SessionGuard::new(context.stats.clone(), client);
    guard.audit = Some(context.audit.clone());
    // With the eBPF redirect the agent's socket is connected to this listener itself: its flow
    // is keyed by our own address and the record carries the original destination. With the
    // nftables redirect that key never exists, so the lookup is not made.
    let redirected_in_kernel = (context.config.gateway.redirect == RedirectMode::Ebpf)
        .then(|| agent.local_addr().ok())
        .flatten()
        .and_then(|local| context.attribution.lookup(&flow_key(client.0, local)));
    let (orig_dst, identity) = match redirected_in_kernel {
        Some(conn) => (
            OrigDst(SocketAddr::new(
                words_addr(conn.orig_addr),
                conn.orig_port as u16,
            )),
            Some(process_identity(&context, &conn)),
        ),
        None => match orig_dst {
            Ok(orig_dst) => (orig_dst, attribute(&context, client, orig_dst)),
            Err(error) => {
                guard.error = Some(error.to_string());
                guard.outcome = Outcome::Refused("no original destination (not redirected)");
                return;
            }
        },
    };
    guard.orig_dst = Some(orig_dst);

    let Some(identity) = identity else {
        guard.outcome = Outcome::Refused("no attribution: not an agent connection");
        return;
    };
    let Some(target) = context.coverage.target_for(&context.config, orig_dst.0) else {
        guard.outcome = Outcome::Refused("original destination is not protected");
        return;
    };
    guard.target = Some(target.name.clone());
    if let AgentIdentity::Process(process) = &identity {
        guard.pid = Some(process.pid);
    }
    if !log_open(
        &context.audit,
        guard.id,
        &client,
        &orig_dst,
        target,
        &identity,
    ) {
        guard.outcome = Outcome::Refused("the audit log cannot be written");
        return;
    }

    let upstream_addr = UpstreamAddr(target.upstream.unwrap_or(orig_dst.0));
    match target.kind {
        TargetKind::Postgres => {
            let _ = agent.set_nodelay(true);
            crate::postgres::serve(
                agent,
                &context.postgres,
                target,
                upstream_addr,
                identity,
                &mut guard,
            )
            .await
        }
        // Object storage is relayed byte for byte until its HTTP gateway lands.
        TargetKind::ObjectStore => relay_bytes(agent, upstream_addr, &context, &mut guard).await,
    }
}

async fn relay_bytes(
    mut agent: TcpStream,
    upstream_addr: UpstreamAddr,
    context: &ProxyContext,
    guard: &mut SessionGuard,
) {
    let gateway = &context.config.gateway;
    let connecting = upstream::connect_within(
        upstream_addr.0,
        gateway.bypass_mark,
        gateway.upstream_connect_timeout,
    );
    let mut upstream = match connecting.await {
        Ok(stream) => stream,
        Err(error) => {
            guard.outcome = Outcome::UpstreamUnreachable;
            guard.error = Some(format!("{upstream_addr}: {error}"));
            return;
        }
    };
    // Request/response protocols: latency matters more than packet count.
    let _ = agent.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let result = relay(
        &mut agent,
        &mut upstream,
        &mut guard.bytes_from_agent,
        &mut guard.bytes_to_agent,
    )
    .await;
    match result {
        Ok(()) => guard.outcome = Outcome::Closed,
        Err(error) => {
            guard.outcome = Outcome::Failed;
            guard.error = Some(error.to_string());
        }
    }
}

fn attribute(
    context: &ProxyContext,
    client: ClientAddr,
    orig_dst: OrigDst,
) -> Option<AgentIdentity> {
    if let Some(conn) = context.attribution.lookup(&flow_key(client.0, orig_dst.0)) {
        return Some(process_identity(context, &conn));
    }
    let source = crate::config::canonical_ip(client.0.ip());
    context
        .config
        .agents
        .remote_sources
        .iter()
        .any(|net| net.contains(&source))
        .then_some(AgentIdentity::Remote { source })
}

fn process_identity(context: &ProxyContext, conn: &ConnIdentity) -> AgentIdentity {
    let info = read_process(&context.proc_root, conn.tgid, Some(conn.connect_ns));
    AgentIdentity::Process(ProcessIdentity::from_kernel(conn, info))
}

/// The `connection.open` record: `client` and `orig_dst` as the transport names them. False
/// when the audit log cannot record it: the connection is then refused.
pub(super) fn log_open(
    audit: &crate::audit::AuditLog,
    id: u64,
    client: &dyn std::fmt::Display,
    orig_dst: &dyn std::fmt::Display,
    target: &Target,
    identity: &AgentIdentity,
) -> bool {
    let opened = crate::audit::event::ConnectionOpened {
        conn_id: id,
        client: client.to_string(),
        orig_dst: orig_dst.to_string(),
        target: target.name.clone(),
        target_kind: target.kind.as_str().to_owned(),
        actor: identity.actor(),
    };
    if let Err(error) = audit.append(crate::audit::Event::ConnectionOpened(opened)) {
        tracing::error!(conn_id = id, %error, "connection refused: not recorded");
        return false;
    }
    match identity {
        AgentIdentity::Process(p) => tracing::info!(
            event = "connection.open",
            conn_id = id,
            client = %client,
            orig_dst = %orig_dst,
            target = %target.name,
            target_kind = target.kind.as_str(),
            identity = identity.kind(),
            pid = p.pid,
            tid = p.tid,
            uid = p.uid,
            gid = p.gid,
            comm = %p.comm,
            exe = p.exe.as_ref().map(|e| e.display().to_string()),
            cmdline = %p.cmdline.join(" "),
            cgroup = p.cgroup.as_deref(),
            cgroup_id = p.cgroup_id,
            ppid = p.ppid,
            parent_exe = p.parent_exe.as_ref().map(|e| e.display().to_string()),
            "agent connection attributed"
        ),
        AgentIdentity::Remote { source } => tracing::info!(
            event = "connection.open",
            conn_id = id,
            client = %client,
            orig_dst = %orig_dst,
            target = %target.name,
            target_kind = target.kind.as_str(),
            identity = identity.kind(),
            source = %source,
            "remote agent connection"
        ),
    }
    true
}

#[cfg(test)]
mod tests;
