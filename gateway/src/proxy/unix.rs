//! The gateway's own unix sockets: agents' connects to a protected server socket are pointed
//! here by the `connect_unix` program, one gateway socket per protected path, and each
//! connection is served as a TCP agent connection would be. The identity comes from the
//! peer's credentials (`SO_PEERCRED`) and `/proc`, and the peer must be an agent by the same
//! rule the kernel applies (uid or agent cgroup): anyone else is refused (fail closed).

use std::{
    io,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use gateway_common::ConnIdentity;
use tokio::net::{UnixListener, UnixStream};

use super::{
    addrs::UpstreamAddr,
    connection::log_open,
    guard::{Outcome, SessionGuard},
    ProxyContext,
};
use crate::{
    config::{TargetKind, UnixRoute},
    drain,
    identity::{read_process, AgentIdentity, ProcessIdentity},
};

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on unix socket {path}: {source}")]
pub struct UnixBindError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Binds the gateway socket of every route. Any user may connect (agents run as any uid);
/// who is served is decided per connection. A socket left by an earlier run is replaced.
pub fn bind(
    routes: &[UnixRoute],
) -> Result<Vec<(UnixRoute, std::os::unix::net::UnixListener)>, UnixBindError> {
    routes
        .iter()
        .map(|route| {
            let path = &route.gateway;
            let error = |source| UnixBindError {
                path: path.clone(),
                source,
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(error)?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(error)?;
            }
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(error(e)),
                _ => {}
            }
            let listener = std::os::unix::net::UnixListener::bind(path).map_err(error)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
                .map_err(error)?;
            listener.set_nonblocking(true).map_err(error)?;
            Ok((route.clone(), listener))
        })
        .collect()
}

/// Removes the gateway sockets at shutdown (agents still redirected then get ENOENT).
pub fn remove(routes: &[UnixRoute]) {
    for route in routes {
        let _ = std::fs::remove_file(&route.gateway);
    }
}

/// Accepts on one gateway socket until the drain starts.
pub async fn serve(
    listener: UnixListener,
    route: UnixRoute,
    context: Arc<ProxyContext>,
    cgroup2_root: Arc<Path>,
    mut drain: drain::Watch,
) {
    let route = Arc::new(route);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = drain.signaled() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let (route, context, root) = (route.clone(), context.clone(), cgroup2_root.clone());
                let watch = drain.clone();
                tokio::spawn(async move {
                    handle(stream, &route, &context, &root).await;
                    drop(watch);
                });
            }
            Err(error) => {
                tracing::warn!(%error, socket = %route.gateway.display(), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(agent: UnixStream, route: &UnixRoute, context: &ProxyContext, root: &Path) {
    let mut guard = SessionGuard::unix(context.stats.clone(), &route.protected);
    guard.audit = Some(context.audit.clone());
    let Some(target) = context
        .config
        .targets
        .iter()
        .find(|t| t.name == route.target && t.kind == TargetKind::Postgres)
    else {
        guard.outcome = Outcome::Refused("unix socket of no postgres target");
        return;
    };
    guard.target = Some(target.name.clone());
    let credentials = match agent.peer_cred() {
        Ok(credentials) => credentials,
        Err(error) => {
            guard.error = Some(error.to_string());
            guard.outcome = Outcome::Refused("no peer credentials");
            return;
        }
    };
    let Some(identity) = unix_identity(context, root, &credentials) else {
        guard.outcome = Outcome::Refused("no attribution: not an agent connection");
        return;
    };
    if let AgentIdentity::Process(process) = &identity {
        guard.pid = Some(process.pid);
    }
    let asked = format!("unix:{}", route.protected.display());
    if !log_open(&context.audit, guard.id, &"unix", &asked, target, &identity) {
        guard.outcome = Outcome::Refused("the audit log cannot be written");
        return;
    }
    let upstream = UpstreamAddr(target.unix_upstream());
    crate::postgres::serve(
        agent,
        &context.postgres,
        target,
        upstream,
        identity,
        &mut guard,
    )
    .await;
}

/// The peer as an agent identity, if it is one: selected by uid, or running in (a descendant
/// of) an agent cgroup. A peer that has already exited cannot be checked and is refused.
fn unix_identity(
    context: &ProxyContext,
    cgroup2_root: &Path,
    credentials: &tokio::net::unix::UCred,
) -> Option<AgentIdentity> {
    let pid = u32::try_from(credentials.pid()?).ok()?;
    let info = read_process(&context.proc_root, pid, None);
    let agents = &context.config.agents;
    let cgroup = info.cgroup.as_deref();
    let by_uid = agents.uids.contains(&credentials.uid());
    let by_cgroup = cgroup.is_some_and(|path| in_agent_cgroup(path, &agents.cgroups));
    if !(by_uid || by_cgroup) {
        return None;
    }
    let comm = std::fs::read_to_string(context.proc_root.join(pid.to_string()).join("comm"))
        .unwrap_or_default();
    let mut conn = ConnIdentity {
        tgid: pid,
        tid: pid,
        uid: credentials.uid(),
        gid: credentials.gid(),
        cgroup_id: cgroup
            .and_then(|path| {
                std::fs::metadata(cgroup2_root.join(path.trim_start_matches('/'))).ok()
            })
            .map_or(0, |meta| meta.ino()),
        ..ConnIdentity::default()
    };
    let comm = comm.trim_end_matches('\n').as_bytes();
    let len = comm.len().min(conn.comm.len() - 1);
    conn.comm[..len].copy_from_slice(&comm[..len]);
    Some(AgentIdentity::Process(ProcessIdentity::from_kernel(
        &conn, info,
    )))
}

/// `path` is an agent cgroup or below one.
fn in_agent_cgroup(path: &str, agent_cgroups: &[String]) -> bool {
    agent_cgroups.iter().any(|agent| {
        let agent = agent.trim_end_matches('/');
        path == agent
            || path
                .strip_prefix(agent)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::in_agent_cgroup;

    #[test]
    fn descendants_of_an_agent_cgroup_are_agents_and_look_alikes_are_not() {
        let agents = ["/ai-agents.slice".to_owned()];
        assert!(in_agent_cgroup("/ai-agents.slice", &agents));
        assert!(in_agent_cgroup("/ai-agents.slice/claude.service", &agents));
        assert!(!in_agent_cgroup("/ai-agents.slice-not", &agents));
        assert!(!in_agent_cgroup("/user.slice", &agents));
        assert!(!in_agent_cgroup("/", &agents));
    }
}
