//! Settings about local paths to a protected server: its unix sockets and how listeners the
//! destinations do not name are treated (`coverage`).

use std::path::PathBuf;

use toml::Spanned;

use super::{
    raw::{RawGateway, RawTarget},
    validate::{absolute, issue, Issue},
    Destination, Target, TargetKind,
};

/// Listeners on a protected port at local addresses the destinations do not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Protected too: a local destination protects its port on every local address the
    /// server listens on (wildcard or specific, either family).
    Extend,
    /// Not extended: `run` refuses to start (and at run time raises an alarm) naming them.
    Strict,
}

impl Coverage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Extend => "extend",
            Self::Strict => "strict",
        }
    }
}

/// What happens to an agent's connect to a protected unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixAgents {
    /// Pointed at the gateway's own socket and served as a TCP agent connection (needs the
    /// cgroup `connect_unix` hook, Linux 6.7+; refused where the kernel lacks it).
    Serve,
    /// Refused (`EPERM`): agents reach the server only by TCP.
    Refuse,
}

impl UnixAgents {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Serve => "serve",
            Self::Refuse => "refuse",
        }
    }
}

pub(super) fn unix_agents(raw: &RawGateway) -> Result<UnixAgents, Issue> {
    match &raw.unix_agents {
        None => Ok(UnixAgents::Serve),
        Some(text) => match text.get_ref().as_str() {
            "serve" => Ok(UnixAgents::Serve),
            "refuse" => Ok(UnixAgents::Refuse),
            other => Err(issue(
                "gateway.unix_agents",
                text,
                format!("`{other}` is not one of: serve, refuse"),
            )),
        },
    }
}

/// Debian's (and libpq's) default socket directory.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
const DEFAULT_GATEWAY_SOCKET_DIR: &str = "/run/tollgate/unix";
/// Room for `/<n>.s.PGSQL` within `sun_path` (107 usable bytes).
pub const MAX_GATEWAY_SOCKET_DIR: usize = 80;
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = gateway_common::UNIX_PATH_LEN - 1;

pub(super) fn unix_socket_dir(raw: &RawGateway) -> Result<PathBuf, Issue> {
    let Some(dir) = &raw.unix_socket_dir else {
        return Ok(PathBuf::from(DEFAULT_GATEWAY_SOCKET_DIR));
    };
    let path = absolute("gateway.unix_socket_dir", dir)?;
    if dir.get_ref().len() > MAX_GATEWAY_SOCKET_DIR {
        return Err(issue(
            "gateway.unix_socket_dir",
            dir,
            format!(
                "must be at most {MAX_GATEWAY_SOCKET_DIR} bytes long (unix socket paths are short)"
            ),
        ));
    }
    Ok(path)
}

pub(super) fn coverage(target: &RawTarget, index: usize) -> Result<Coverage, Issue> {
    match &target.coverage {
        None => Ok(Coverage::Extend),
        Some(text) => match text.get_ref().as_str() {
            "extend" => Ok(Coverage::Extend),
            "strict" => Ok(Coverage::Strict),
            other => Err(issue(
                format!("targets[{index}].coverage"),
                text,
                format!("`{other}` is not one of: extend, strict"),
            )),
        },
    }
}

/// The listed paths, or by default the PostgreSQL socket of each port the target protects on
/// a loopback address or on every address (the server is then local).
pub(super) fn unix_sockets(
    target: &RawTarget,
    index: usize,
    kind: TargetKind,
    destinations: &[Destination],
) -> Result<Vec<PathBuf>, Issue> {
    let field = |i: usize| format!("targets[{index}].unix_sockets[{i}]");
    let Some(list) = &target.unix_sockets else {
        if kind != TargetKind::Postgres {
            return Ok(Vec::new());
        }
        let mut ports: Vec<u16> = destinations
            .iter()
            .filter(|d| match d {
                Destination::Exact(addr) => super::canonical_ip(addr.ip()).is_loopback(),
                Destination::AnyAddress(_) => true,
            })
            .map(|d| d.port())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        return Ok(ports
            .into_iter()
            .map(|port| PathBuf::from(format!("{DEFAULT_SOCKET_DIR}/.s.PGSQL.{port}")))
            .collect());
    };
    if kind != TargetKind::Postgres && !list.get_ref().is_empty() {
        return Err(issue(
            format!("targets[{index}].unix_sockets"),
            list,
            "unix sockets are for postgres targets",
        ));
    }
    let mut paths = Vec::new();
    for (i, text) in list.get_ref().iter().enumerate() {
        let path = absolute(field(i), text)?;
        if text.get_ref().len() > MAX_SOCKET_PATH {
            return Err(issue(
                field(i),
                text,
                format!("longer than a unix socket path can be ({MAX_SOCKET_PATH} bytes)"),
            ));
        }
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    Ok(paths)
}

/// A socket path belongs to one target: the gateway must know which one an agent asked for.
pub(super) fn unix_sockets_unique(
    targets: &[Target],
    raw: &Spanned<Vec<Spanned<RawTarget>>>,
) -> Result<(), Issue> {
    for (index, target) in targets.iter().enumerate() {
        for path in &target.unix_sockets {
            let earlier = targets[..index]
                .iter()
                .find(|other| other.unix_sockets.contains(path));
            if let Some(other) = earlier {
                let written = &raw.get_ref()[index];
                // Point at the list when it was written, else at the target.
                let offset = written
                    .get_ref()
                    .unix_sockets
                    .as_ref()
                    .map_or(written.span().start, |list| list.span().start);
                return Err(Issue {
                    field: format!("targets[{index}].unix_sockets"),
                    offset,
                    message: format!(
                        "{} is already protected by target `{}`; list it for one of them \
                         (`unix_sockets = []` turns the default off)",
                        path.display(),
                        other.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// One protected unix socket and the gateway socket its agent connects are pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixRoute {
    pub target: String,
    /// The server's socket, as configured.
    pub protected: PathBuf,
    /// The gateway's socket for it: `<gateway.unix_socket_dir>/<index>.s.PGSQL`.
    pub gateway: PathBuf,
}

impl super::Config {
    /// Every protected unix socket, in configuration order; the index names its gateway socket.
    pub fn unix_routes(&self) -> Vec<UnixRoute> {
        self.targets
            .iter()
            .flat_map(|target| {
                target
                    .unix_sockets
                    .iter()
                    .map(move |path| (target.name.clone(), path.clone()))
            })
            .enumerate()
            .map(|(index, (target, protected))| UnixRoute {
                target,
                protected,
                gateway: self
                    .gateway
                    .unix_socket_dir
                    .join(format!("{index}.s.PGSQL")),
            })
            .collect()
    }
}

impl Target {
    /// Where a unix-socket agent's session goes: the configured upstream, else the target's
    /// loopback destination (the server behind its local socket), else its port on 127.0.0.1.
    pub fn unix_upstream(&self) -> std::net::SocketAddr {
        if let Some(upstream) = self.upstream {
            return upstream;
        }
        let exact = |loopback_only: bool| {
            self.destinations.iter().find_map(|d| match d {
                Destination::Exact(addr)
                    if !loopback_only || super::canonical_ip(addr.ip()).is_loopback() =>
                {
                    Some(*addr)
                }
                _ => None,
            })
        };
        exact(true).or_else(|| exact(false)).unwrap_or_else(|| {
            let port = self.destinations.first().map_or(5432, |d| d.port());
            std::net::SocketAddr::from(([127, 0, 0, 1], port))
        })
    }
}
