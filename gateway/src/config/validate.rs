//! Raw file -> validated [`Config`]. Checks that need no I/O beyond name resolution.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs},
    path::PathBuf,
    time::Duration,
};

use ipnet::IpNet;
use toml::Spanned;

use super::{
    raw::{RawAgents, RawConfig, RawGateway, RawTarget},
    AgentSelection, Config, Destination, GatewaySettings, RedirectMode, Target, TargetKind,
    UntrackScope,
};

/// Below 1024 on purpose: while the gateway is down the rules keep sending agents to this port,
/// and an unprivileged user must not be able to bind it and receive their connections.
pub const DEFAULT_LISTEN_PORT: u16 = 954;
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/tollgate/admin.sock";
pub const DEFAULT_BPFFS_DIR: &str = "/sys/fs/bpf/tollgate";
pub const DEFAULT_NFT_TABLE: &str = "tollgate";
/// PostgreSQL accepts messages up to 1 GiB; the gateway buffers a whole message before it
/// forwards it, so it takes less by default.
pub const DEFAULT_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Below PostgreSQL's own pre-authentication limit nothing useful fits.
const MIN_MESSAGE_BYTES: u64 = 10_000;
const MAX_MESSAGE_BYTES: u64 = 0x3fff_ffff;
/// Worker threads: more than a host has cores only adds wake-ups.
const MAX_WORKERS: u16 = 1024;
/// Beyond a millisecond a worker would poll through whole server round trips for nothing.
const MAX_BUSY_POLL_US: u64 = 1000;
/// Long enough for a simple query's round trip to the server on a 2-core VM (60 µs helped
/// only prepared statements there).
const DEFAULT_BUSY_POLL_US: u64 = 200;

/// What is wrong, where (byte offset into the file) and in which field.
#[derive(Debug)]
pub struct Issue {
    pub field: String,
    pub offset: usize,
    pub message: String,
}

/// A path that must be absolute (the gateway runs from any working directory).
pub(super) fn absolute(
    field: impl Into<String>,
    value: &Spanned<String>,
) -> Result<PathBuf, Issue> {
    if value.get_ref().starts_with('/') {
        Ok(PathBuf::from(value.get_ref()))
    } else {
        Err(issue(
            field,
            value,
            format!("`{}` must be an absolute path", value.get_ref()),
        ))
    }
}

/// A number that must lie in `range`; `default` when the field is absent.
pub(super) fn bounded(
    field: impl Into<String>,
    raw: Option<&Spanned<u64>>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, Issue> {
    match raw {
        None => Ok(default),
        Some(value) if range.contains(value.get_ref()) => Ok(*value.get_ref()),
        Some(value) => Err(issue(
            field,
            value,
            format!("must be between {} and {}", range.start(), range.end()),
        )),
    }
}

pub(super) fn issue<T>(
    field: impl Into<String>,
    at: &Spanned<T>,
    message: impl Into<String>,
) -> Issue {
    Issue {
        field: field.into(),
        offset: at.span().start,
        message: message.into(),
    }
}

pub fn validate(raw: RawConfig) -> Result<Config, Issue> {
    let agents = validate_agents(&raw.agents)?;
    let gateway = validate_gateway(raw.gateway.as_ref(), &agents)?;
    let targets = validate_targets(raw.targets.as_ref(), &raw.agents, gateway.listen_port)?;
    let audit = super::audit::settings(raw.audit.as_ref(), &gateway.tls.state_dir)?;
    let approvals = super::approvals::settings(raw.approvals.as_ref())?;
    Ok(Config {
        gateway,
        agents,
        targets,
        audit,
        approvals,
    })
}

fn validate_gateway(
    raw: Option<&Spanned<RawGateway>>,
    agents: &AgentSelection,
) -> Result<GatewaySettings, Issue> {
    let default = RawGateway::default();
    let raw = raw.map_or(&default, |r| r.get_ref());

    let listen_port = match &raw.listen_port {
        Some(port) if *port.get_ref() == 0 => {
            return Err(issue(
                "gateway.listen_port",
                port,
                "must be a port number from 1 to 65535",
            ))
        }
        Some(port) => *port.get_ref(),
        None => DEFAULT_LISTEN_PORT,
    };

    let bind = match &raw.bind {
        Some(list) if list.get_ref().is_empty() => {
            return Err(issue(
                "gateway.bind",
                list,
                "must list at least one address",
            ))
        }
        Some(list) => list
            .get_ref()
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.get_ref().parse::<IpAddr>().map_err(|_| {
                    issue(
                        format!("gateway.bind[{i}]"),
                        text,
                        format!("`{}` is not an IP address", text.get_ref()),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        // Remote agents arrive on the host's own addresses, so they need the wildcard.
        None if !agents.remote_sources.is_empty() => {
            vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ]
        }
        None => vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ],
    };

    let absolute_path = |field: &str, value: &Option<Spanned<String>>, default: &str| match value {
        Some(path) => absolute(field, path),
        None => Ok(PathBuf::from(default)),
    };
    let admin_socket = absolute_path(
        "gateway.admin_socket",
        &raw.admin_socket,
        DEFAULT_ADMIN_SOCKET,
    )?;
    let bpffs_dir = absolute_path("gateway.bpffs_dir", &raw.bpffs_dir, DEFAULT_BPFFS_DIR)?;

    let nft_table = match &raw.nft_table {
        Some(name) if !is_nft_identifier(name.get_ref()) => {
            return Err(issue(
                "gateway.nft_table",
                name,
                "must start with a letter and hold only letters, digits and `_`",
            ))
        }
        Some(name) => name.get_ref().clone(),
        None => DEFAULT_NFT_TABLE.to_owned(),
    };

    let mark = match &raw.mark {
        Some(mark) if *mark.get_ref() == 0 => {
            return Err(issue(
                "gateway.mark",
                mark,
                "must be non-zero (0 means unmarked)",
            ))
        }
        Some(mark) => *mark.get_ref(),
        None => gateway_common::DEFAULT_MARK,
    };

    let bypass_mark = match &raw.bypass_mark {
        Some(value) if *value.get_ref() == 0 || *value.get_ref() == mark => {
            return Err(issue(
                "gateway.bypass_mark",
                value,
                "must be non-zero and differ from gateway.mark",
            ))
        }
        Some(value) => *value.get_ref(),
        None if mark == gateway_common::DEFAULT_BYPASS_MARK => gateway_common::DEFAULT_MARK,
        None => gateway_common::DEFAULT_BYPASS_MARK,
    };

    let millis = |field: &str, value: &Option<Spanned<u64>>, default: u64| match value {
        Some(ms) if *ms.get_ref() == 0 => Err(issue(field, ms, "must be greater than 0")),
        Some(ms) => Ok(Duration::from_millis(*ms.get_ref())),
        None => Ok(Duration::from_millis(default)),
    };

    let settings = GatewaySettings {
        listen_port,
        bind,
        admin_socket,
        bpffs_dir,
        nft_table,
        mark,
        bypass_mark,
        upstream_connect_timeout: millis(
            "gateway.upstream_connect_timeout_ms",
            &raw.upstream_connect_timeout_ms,
            5_000,
        )?,
        drain_timeout: millis("gateway.drain_timeout_ms", &raw.drain_timeout_ms, 10_000)?,
        tls: super::tls::agent_tls(raw)?,
        unix_socket_dir: super::local::unix_socket_dir(raw)?,
        unix_agents: super::local::unix_agents(raw)?,
        policy_file: raw
            .policy_file
            .as_ref()
            .map(|file| absolute("gateway.policy_file", file))
            .transpose()?,
        startup_timeout: millis(
            "gateway.startup_timeout_ms",
            &raw.startup_timeout_ms,
            15_000,
        )?,
        max_message_bytes: match &raw.max_message_bytes {
            Some(bytes) if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(bytes.get_ref()) => {
                return Err(issue(
                    "gateway.max_message_bytes",
                    bytes,
                    format!("must be between {MIN_MESSAGE_BYTES} and {MAX_MESSAGE_BYTES}"),
                ))
            }
            Some(bytes) => *bytes.get_ref() as usize,
            None => DEFAULT_MESSAGE_BYTES,
        },
        redirect: match &raw.redirect {
            None => RedirectMode::Nftables,
            Some(mode) => match mode.get_ref().as_str() {
                "nftables" => RedirectMode::Nftables,
                "ebpf" => RedirectMode::Ebpf,
                other => {
                    return Err(issue(
                        "gateway.redirect",
                        mode,
                        format!("`{other}` is not one of: nftables, ebpf"),
                    ))
                }
            },
        },
        workers: match &raw.workers {
            None => default_workers(),
            Some(workers) if !(1..=MAX_WORKERS).contains(workers.get_ref()) => {
                return Err(issue(
                    "gateway.workers",
                    workers,
                    format!("must be between 1 and {MAX_WORKERS}"),
                ))
            }
            Some(workers) => usize::from(*workers.get_ref()),
        },
        busy_poll: match &raw.busy_poll_us {
            None => Duration::from_micros(DEFAULT_BUSY_POLL_US),
            Some(us) if *us.get_ref() > MAX_BUSY_POLL_US => {
                return Err(issue(
                    "gateway.busy_poll_us",
                    us,
                    format!("must be between 0 and {MAX_BUSY_POLL_US} (microseconds)"),
                ))
            }
            Some(us) => Duration::from_micros(*us.get_ref()),
        },
        untrack: match &raw.untrack {
            None => UntrackScope::Auto,
            Some(scope) => match scope.get_ref().as_str() {
                "auto" => UntrackScope::Auto,
                "non-agent" => UntrackScope::NonAgent,
                "loopback" => UntrackScope::Loopback,
                other => {
                    return Err(issue(
                        "gateway.untrack",
                        scope,
                        format!("`{other}` is not one of: auto, non-agent, loopback"),
                    ))
                }
            },
        },
    };
    // With the eBPF redirect agents connect to 127.0.0.1 / ::1 on the listen port.
    let reaches = |loopback: IpAddr| {
        settings.bind.iter().any(|ip| {
            *ip == loopback || (ip.is_unspecified() && ip.is_ipv4() == loopback.is_ipv4())
        })
    };
    if settings.redirect == RedirectMode::Ebpf
        && !(reaches(IpAddr::V4(Ipv4Addr::LOCALHOST)) && reaches(IpAddr::V6(Ipv6Addr::LOCALHOST)))
    {
        let message = "with redirect = \"ebpf\" the listener must include 127.0.0.1 and ::1 (or 0.0.0.0 and ::)";
        return Err(match &raw.bind {
            Some(bind) => issue("gateway.bind", bind, message),
            None => Issue {
                field: "gateway.bind".into(),
                offset: 0,
                message: message.into(),
            },
        });
    }
    Ok(settings)
}

/// One worker per two cores: the gateway shares a database host's cores with the server and
/// its clients, and an event loop serving more sessions finds more of them ready at each
/// wake-up (on 2 cores, pgbench -S at 10 clients: 14% less gateway CPU per transaction and
/// 3-13% more transactions than with two workers).
fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.div_ceil(2)
}

fn is_nft_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

fn validate_agents(raw: &Spanned<RawAgents>) -> Result<AgentSelection, Issue> {
    let agents = raw.get_ref();
    if agents.cgroups.is_empty() && agents.uids.is_empty() && agents.remote_sources.is_empty() {
        return Err(issue(
            "agents",
            raw,
            "select agents with at least one of `cgroups`, `uids` or `remote_sources`",
        ));
    }
    let mut cgroups = Vec::new();
    for (i, path) in agents.cgroups.iter().enumerate() {
        let text = path.get_ref();
        let field = format!("agents.cgroups[{i}]");
        if !text.starts_with('/') || text == "/" {
            return Err(issue(
                field,
                path,
                format!("`{text}` must be a cgroup v2 path below the root, as in /proc/PID/cgroup (e.g. \"/tollgate-agents\")"),
            ));
        }
        if text.split('/').any(|part| part == ".." || part == ".") {
            return Err(issue(
                field,
                path,
                format!("`{text}` must not contain `.` or `..`"),
            ));
        }
        let depth = text.trim_matches('/').split('/').count();
        if depth > gateway_common::MAX_CGROUP_DEPTH as usize {
            return Err(issue(
                field,
                path,
                format!(
                    "`{text}` is {depth} levels deep; the kernel programs look {} levels down",
                    gateway_common::MAX_CGROUP_DEPTH
                ),
            ));
        }
        cgroups.push(text.trim_end_matches('/').to_owned());
    }
    let uids = agents.uids.iter().map(|uid| *uid.get_ref()).collect();
    let remote_sources = agents
        .remote_sources
        .iter()
        .enumerate()
        .map(|(i, text)| {
            parse_cidr(text.get_ref()).ok_or_else(|| {
                issue(
                    format!("agents.remote_sources[{i}]"),
                    text,
                    format!(
                        "`{}` is not an address or CIDR such as 10.20.0.0/16",
                        text.get_ref()
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AgentSelection {
        cgroups,
        uids,
        remote_sources,
    })
}

fn parse_cidr(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|net| net.trunc())
}

fn validate_targets(
    raw: Option<&Spanned<Vec<Spanned<RawTarget>>>>,
    agents: &Spanned<RawAgents>,
    listen_port: u16,
) -> Result<Vec<Target>, Issue> {
    let Some(raw) = raw.filter(|list| !list.get_ref().is_empty()) else {
        return Err(issue(
            "targets",
            agents,
            "no [[targets]]: list at least one protected destination",
        ));
    };
    let mut names = HashSet::new();
    let mut seen: Vec<(Destination, String)> = Vec::new();
    let mut targets = Vec::new();
    for (index, spanned) in raw.get_ref().iter().enumerate() {
        let target = spanned.get_ref();
        let field = |name: &str| format!("targets[{index}].{name}");
        let name = target.name.get_ref().trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(issue(
                field("name"),
                &target.name,
                "must be non-empty and hold only letters, digits, `-`, `_` and `.`",
            ));
        }
        if !names.insert(name.to_owned()) {
            return Err(issue(
                field("name"),
                &target.name,
                format!("`{name}` is used by another target"),
            ));
        }
        let kind = match target.kind.get_ref().as_str() {
            "postgres" => TargetKind::Postgres,
            "object_store" => TargetKind::ObjectStore,
            other => {
                return Err(issue(
                    field("kind"),
                    &target.kind,
                    format!("`{other}` is not one of: postgres, object_store"),
                ))
            }
        };
        if target.destinations.get_ref().is_empty() {
            return Err(issue(
                field("destinations"),
                &target.destinations,
                "must list at least one destination",
            ));
        }
        let mut destinations = Vec::new();
        for (i, text) in target.destinations.get_ref().iter().enumerate() {
            let dest_field = format!("targets[{index}].destinations[{i}]");
            for dest in parse_destination(text.get_ref())
                .map_err(|message| issue(&dest_field, text, message))?
            {
                if dest.port() == listen_port {
                    return Err(issue(
                        &dest_field,
                        text,
                        format!("{dest} uses the gateway's own listen_port {listen_port}; pick another gateway.listen_port"),
                    ));
                }
                if destinations.contains(&dest) {
                    // The same address listed twice (e.g. "localhost" and "127.0.0.1").
                    continue;
                }
                if let Some((_, other)) = seen.iter().find(|(d, _)| *d == dest) {
                    return Err(issue(
                        &dest_field,
                        text,
                        format!("{dest} is already protected by target `{other}`"),
                    ));
                }
                seen.push((dest, name.to_owned()));
                destinations.push(dest);
            }
        }
        let upstream = match &target.upstream {
            Some(text) => Some(
                resolve(text.get_ref())
                    .and_then(|addrs| {
                        addrs
                            .into_iter()
                            .next()
                            .ok_or_else(|| "resolves to no address".to_owned())
                    })
                    .map_err(|message| issue(field("upstream"), text, message))?,
            ),
            None => None,
        };
        let auth = super::auth::target_auth(target, index)?;
        if let (TargetKind::ObjectStore, super::TargetAuth::Token(_), Some(at)) =
            (kind, &auth, &target.auth)
        {
            return Err(issue(
                field("auth"),
                at,
                "token authentication is for postgres targets",
            ));
        }
        let unix_sockets = super::local::unix_sockets(target, index, kind, &destinations)?;
        targets.push(Target {
            name: name.to_owned(),
            kind,
            destinations,
            upstream,
            upstream_tls: super::tls::upstream_tls(target, index)?,
            catalog_credentials_file: match &target.catalog_credentials_file {
                Some(file) => Some(absolute(
                    format!("targets[{index}].catalog_credentials_file"),
                    file,
                )?),
                None => match &auth {
                    super::TargetAuth::Token(token) => Some(token.credentials_file.clone()),
                    super::TargetAuth::Passthrough => None,
                },
            },
            unix_sockets,
            coverage: super::local::coverage(target, index)?,
            auth,
        });
    }
    super::local::unix_sockets_unique(&targets, raw)?;
    Ok(targets)
}

/// `host:port`, `[v6]:port` or `*:port`. A host name yields every address it resolves to.
fn parse_destination(text: &str) -> Result<Vec<Destination>, String> {
    if let Some(port) = text.strip_prefix("*:") {
        return parse_port(port).map(|port| vec![Destination::AnyAddress(port)]);
    }
    if !text.contains(':') {
        return Err(format!("`{text}` must be host:port, [ipv6]:port or *:port"));
    }
    let addrs = resolve(text)?;
    if let Some(any) = addrs.iter().find(|a| a.ip().is_unspecified()) {
        return Err(format!(
            "`{text}` is the unspecified address; to protect port {} on every address write \"*:{}\"",
            any.port(),
            any.port()
        ));
    }
    Ok(addrs
        .into_iter()
        .map(|addr| {
            Destination::Exact(SocketAddr::new(super::canonical_ip(addr.ip()), addr.port()))
        })
        .collect())
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{text}` is not a port number from 1 to 65535")),
        Ok(port) => Ok(port),
    }
}

fn resolve(text: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return if addr.port() == 0 {
            Err(format!("`{text}` needs a non-zero port"))
        } else {
            Ok(vec![addr])
        };
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("`{text}` must be host:port or [ipv6]:port"));
    };
    let port = parse_port(port)?;
    let mut addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve `{host}`: {error}"))?
        .collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(format!("`{host}` resolves to no address"));
    }
    Ok(addrs)
}
