//! Loads the eBPF object, fills the selection maps from config, attaches the programs to the
//! agent cgroups (or the cgroup root when agents are also selected by uid) and pins everything.

mod extend;
mod follow;

use std::{
    collections::BTreeMap,
    fs::File,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use aya::{
    maps::{HashMap, MapData},
    programs::{
        links::{FdLink, PinnedLink},
        CgroupAttachMode, CgroupSock, CgroupSockAddr, SockOps,
    },
    Ebpf, EbpfLoader,
};
use gateway_common::{ConnIdentity, DestKey, FlowKey};

use super::{
    attribution::{addr_words, BpfAttribution},
    bpffs,
    unix_backstop::{Layout, UnixBackstop},
    unix_connect::{self, UnixConnect, UnixConnectError, CONNECT_UNIX},
    Attribution,
};
use crate::config::{Config, Destination, RedirectMode};

#[derive(Debug, thiserror::Error)]
pub enum ProgramsError {
    #[error("agent cgroup {path} does not exist; create it first (mkdir {path}) and move agent processes into it")]
    MissingCgroup { path: PathBuf },
    #[error("cannot open cgroup {path}: {source}")]
    OpenCgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program `{name}`: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map `{name}`: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("program `{name}`: its link cannot be pinned: {source}")]
    Link {
        name: &'static str,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error(transparent)]
    Bpffs(#[from] bpffs::BpffsError),
    #[error("program `{CONNECT_UNIX}`: {0}")]
    UnixConnect(#[from] UnixConnectError),
}

pub const CONNECT4: &str = "tollgate_connect4";
pub const CONNECT6: &str = "tollgate_connect6";
pub const FLOW_EVENTS: &str = "tollgate_flow_events";
pub const SOCK_RELEASE: &str = "tollgate_sock_release";
pub const GETPEERNAME4: &str = "tollgate_getpeername4";
pub const GETPEERNAME6: &str = "tollgate_getpeername6";

/// The programs a configuration attaches: the getpeername pair only with the eBPF redirect,
/// where the socket is really connected to the listener.
fn program_names(config: &Config) -> Vec<&'static str> {
    // Cleanup and flow tracking first: a connect marked while attaching must find them there.
    let mut names = vec![SOCK_RELEASE, FLOW_EVENTS, CONNECT4, CONNECT6];
    if config.gateway.redirect == RedirectMode::Ebpf {
        names.extend([GETPEERNAME4, GETPEERNAME6]);
    }
    names
}

/// aya-log level for the kernel side: warnings and errors (aya_log_common::Level::Warn).
const BPF_LOG_LEVEL_WARN: u8 = 2;

/// Where the programs are attached.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttachPoint {
    /// cgroup v2 path as in /proc/PID/cgroup ("/" for the root).
    pub cgroup: String,
    pub cgroup_id: u64,
    pub programs: Vec<&'static str>,
}

pub struct LoadedPrograms {
    ebpf: Ebpf,
    attribution: Arc<BpfAttribution>,
    generation: PathBuf,
    /// Shared with the status document, which follows re-attachments.
    attach_points: Arc<Mutex<Vec<AttachPoint>>>,
    links: Vec<PinnedLink>,
    names: Vec<&'static str>,
    /// Configured agent cgroup path -> the id its programs and map entry belong to.
    agent_cgroup_ids: BTreeMap<String, u64>,
    /// Attached to each agent cgroup (no uid selection) rather than at the root.
    per_cgroup: bool,
    /// Agents' connects to protected unix sockets, where a target protects one.
    unix: Option<UnixConnect>,
    /// The LSM backstop behind it (see [`LoadedPrograms::unix_backstop`]).
    unix_backstop: Option<Result<UnixBackstop, String>>,
    /// Listener coverage added to `PROTECTED` beyond the configured destinations.
    extended: std::collections::BTreeSet<std::net::SocketAddr>,
}

impl LoadedPrograms {
    pub fn load_and_attach(config: &Config, cgroup2_root: &Path) -> Result<Self, ProgramsError> {
        let cgroups = agent_cgroup_dirs(config, cgroup2_root)?;

        let mark = config.gateway.mark;
        let bypass_mark = config.gateway.bypass_mark;
        let redirect_mode = match config.gateway.redirect {
            RedirectMode::Nftables => gateway_common::redirect::NFTABLES,
            RedirectMode::Ebpf => gateway_common::redirect::EBPF,
        };
        let listen_port = u32::from(config.gateway.listen_port);
        let log_level = BPF_LOG_LEVEL_WARN;
        let unix_rules = unix_connect::rules(&config.unix_routes());
        let layout = (!unix_rules.is_empty()).then(Layout::of_running_kernel);
        let mut loader = EbpfLoader::new();
        loader
            .override_global("BYPASS_MARK", &bypass_mark, true)
            .override_global("CONNECT_MARK", &mark, true)
            .override_global("REDIRECT_MODE", &redirect_mode, true)
            .override_global("LISTEN_PORT", &listen_port, true)
            .override_global("AYA_LOG_LEVEL", &log_level, false);
        if let Some(Ok(layout)) = &layout {
            layout.apply(&mut loader);
        }
        let mut ebpf = loader.load(aya::include_bytes_aligned!(concat!(
            env!("OUT_DIR"),
            "/tollgate-ebpf"
        )))?;
        fill_selection_maps(&mut ebpf, config, &cgroups)?;
        let unix = load_unix_hook(&ebpf, config, &unix_rules)?;

        let generation = bpffs::new_generation(&config.gateway.bpffs_dir)?;
        let result = attach_and_pin(
            &mut ebpf,
            config,
            cgroup2_root,
            &cgroups,
            &generation,
            unix.as_ref(),
        );
        let (links, attach_points) = match result {
            Ok(done) => done,
            Err(error) => {
                let _ = bpffs::remove_generation(&generation);
                return Err(error);
            }
        };
        // Where unix sockets are protected: the backstop for names the redirect cannot see.
        let unix_backstop = layout.map(|layout| {
            let configured = unix_rules.iter().map(|r| r.protected.clone()).collect();
            layout.map_err(|e| e.to_string()).and_then(|_| {
                UnixBackstop::attach(&mut ebpf, &generation, configured).map_err(|e| e.to_string())
            })
        });
        let flows = take_hash_map::<FlowKey, ConnIdentity>(&mut ebpf, "FLOWS")?;
        let agent_cgroup_ids = cgroups.iter().map(|c| (c.path.clone(), c.id)).collect();
        Ok(Self {
            ebpf,
            attribution: Arc::new(BpfAttribution::new(flows)),
            generation,
            attach_points: Arc::new(Mutex::new(attach_points)),
            links,
            names: program_names(config),
            agent_cgroup_ids,
            per_cgroup: config.agents.uids.is_empty(),
            unix,
            unix_backstop,
            extended: Default::default(),
        })
    }

    /// Whether the `connect_unix` program is attached.
    pub fn unix_hook_attached(&self) -> bool {
        self.unix.is_some()
    }

    /// The backstop refusing agents' connects to protected unix sockets by any name: None
    /// without protected unix sockets, the reason it does not run otherwise.
    pub fn unix_backstop(&self) -> Option<Result<&UnixBackstop, &str>> {
        self.unix_backstop
            .as_ref()
            .map(|b| b.as_ref().map_err(String::as_str))
    }

    /// Re-reads the names the protected servers are bound to.
    pub fn refresh_unix_backstop(&mut self) {
        if let Some(Ok(backstop)) = &mut self.unix_backstop {
            backstop.refresh(Path::new("/proc"));
        }
    }

    pub fn attribution(&self) -> Arc<dyn Attribution> {
        self.attribution.clone()
    }

    pub fn generation_dir(&self) -> &Path {
        &self.generation
    }

    pub fn attach_points(&self) -> Arc<Mutex<Vec<AttachPoint>>> {
        self.attach_points.clone()
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

/// A configured agent cgroup as found at startup.
struct AgentCgroupDir {
    /// cgroup v2 path as configured.
    path: String,
    dir: PathBuf,
    /// Read once: the map entry and the id re-creation is detected against must agree.
    id: u64,
}

fn agent_cgroup_dirs(config: &Config, root: &Path) -> Result<Vec<AgentCgroupDir>, ProgramsError> {
    config
        .agents
        .cgroups
        .iter()
        .map(|cgroup| {
            let dir = root.join(cgroup.trim_start_matches('/'));
            if !dir.is_dir() {
                return Err(ProgramsError::MissingCgroup { path: dir });
            }
            let id = cgroup_id(&dir)?;
            Ok(AgentCgroupDir {
                path: cgroup.clone(),
                dir,
                id,
            })
        })
        .collect()
}

fn cgroup_id(dir: &Path) -> Result<u64, ProgramsError> {
    // The cgroup v2 id the kernel reports is the inode number of the cgroup directory.
    std::fs::metadata(dir)
        .map(|meta| meta.ino())
        .map_err(|source| ProgramsError::OpenCgroup {
            path: dir.to_owned(),
            source,
        })
}

fn take_hash_map<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, ProgramsError> {
    let map = ebpf.take_map(name).ok_or(ProgramsError::Map {
        name,
        source: aya::maps::MapError::InvalidName {
            name: name.to_owned(),
        },
    })?;
    HashMap::try_from(map).map_err(|source| ProgramsError::Map { name, source })
}

fn map_mut<'a, K: aya::Pod, V: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<HashMap<&'a mut MapData, K, V>, ProgramsError> {
    let map = ebpf.map_mut(name).ok_or(ProgramsError::Map {
        name,
        source: aya::maps::MapError::InvalidName {
            name: name.to_owned(),
        },
    })?;
    HashMap::try_from(map).map_err(|source| ProgramsError::Map { name, source })
}

fn fill_selection_maps(
    ebpf: &mut Ebpf,
    config: &Config,
    cgroups: &[AgentCgroupDir],
) -> Result<(), ProgramsError> {
    let map_error = |name| move |source| ProgramsError::Map { name, source };

    let mut protected = map_mut::<DestKey, u8>(ebpf, "PROTECTED")?;
    for target in &config.targets {
        for destination in &target.destinations {
            let key = match *destination {
                Destination::Exact(addr) => DestKey {
                    addr: addr_words(addr.ip()),
                    port: addr.port().into(),
                },
                Destination::AnyAddress(port) => DestKey {
                    addr: [0; 4],
                    port: port.into(),
                },
            };
            protected
                .insert(key, 1, 0)
                .map_err(map_error("PROTECTED"))?;
        }
    }

    let mut uids = map_mut::<u32, u8>(ebpf, "AGENT_UIDS")?;
    for uid in &config.agents.uids {
        uids.insert(*uid, 1, 0).map_err(map_error("AGENT_UIDS"))?;
    }

    let mut agent_cgroups = map_mut::<u64, u8>(ebpf, "AGENT_CGROUPS")?;
    for cgroup in cgroups {
        agent_cgroups
            .insert(cgroup.id, 1, 0)
            .map_err(map_error("AGENT_CGROUPS"))?;
    }
    Ok(())
}

/// Loads the `connect_unix` program for the configured unix sockets where agents' connects
/// to them are served (see [`unix_connect::serves`]); refused ones need only the backstop.
fn load_unix_hook(
    ebpf: &Ebpf,
    config: &Config,
    rules: &[unix_connect::UnixRedirectRule],
) -> Result<Option<UnixConnect>, ProgramsError> {
    if rules.is_empty() || !unix_connect::serves(config) {
        return Ok(None);
    }
    Ok(Some(UnixConnect::load(ebpf, rules)?))
}

fn attach_and_pin(
    ebpf: &mut Ebpf,
    config: &Config,
    cgroup2_root: &Path,
    cgroups: &[AgentCgroupDir],
    generation: &Path,
    unix: Option<&UnixConnect>,
) -> Result<(Vec<PinnedLink>, Vec<AttachPoint>), ProgramsError> {
    // uid selection cannot be expressed as a cgroup, so the programs then run for every
    // process and decide inside (they check uids and agent cgroup ancestors either way).
    let points: Vec<(String, PathBuf)> = if config.agents.uids.is_empty() {
        cgroups
            .iter()
            .map(|c| (c.path.clone(), c.dir.clone()))
            .collect()
    } else {
        vec![("/".to_owned(), cgroup2_root.to_owned())]
    };

    let names = program_names(config);
    for &name in &names {
        load_program(ebpf, name)?;
    }
    let mut links = Vec::new();
    let mut attach_points = Vec::new();
    for (cgroup, dir) in &points {
        let (point_links, point) = attach_at(ebpf, &names, unix, cgroup, dir, generation)?;
        links.extend(point_links);
        attach_points.push(point);
    }

    for &name in &names {
        let path = generation.join(format!("prog_{name}"));
        let program = ebpf.program_mut(name).ok_or(ProgramsError::Program {
            name,
            source: aya::programs::ProgramError::NotLoaded,
        })?;
        program
            .pin(&path)
            .map_err(|source| ProgramsError::Pin { path, source })?;
    }
    if let Some(unix) = unix {
        unix.pin_program(&generation.join(format!("prog_{CONNECT_UNIX}")))?;
    }
    for (name, map) in ebpf.maps() {
        if name.starts_with('.') {
            continue;
        }
        let path = generation.join(format!("map_{name}"));
        map.pin(&path)
            .map_err(|source| ProgramsError::Pin { path, source })?;
    }
    Ok((links, attach_points))
}

/// Attaches every program to one cgroup and pins the links in the generation directory.
fn attach_at(
    ebpf: &mut Ebpf,
    names: &[&'static str],
    unix: Option<&UnixConnect>,
    cgroup: &str,
    dir: &Path,
    generation: &Path,
) -> Result<(Vec<PinnedLink>, AttachPoint), ProgramsError> {
    let id = cgroup_id(dir)?;
    let file = File::open(dir).map_err(|source| ProgramsError::OpenCgroup {
        path: dir.to_owned(),
        source,
    })?;
    let mut links = Vec::new();
    for &name in names {
        let link = attach_program(ebpf, name, &file)?;
        let path = generation.join(format!("link_{name}_{id}"));
        links.push(
            link.pin(&path)
                .map_err(|source| ProgramsError::Pin { path, source })?,
        );
    }
    let mut programs = names.to_vec();
    if let Some(unix) = unix {
        unix.attach(&file, &generation.join(format!("link_{CONNECT_UNIX}_{id}")))?;
        programs.push(CONNECT_UNIX);
    }
    let point = AttachPoint {
        cgroup: cgroup.to_owned(),
        cgroup_id: id,
        programs,
    };
    Ok((links, point))
}

fn load_program(ebpf: &mut Ebpf, name: &'static str) -> Result<(), ProgramsError> {
    let err = |source| ProgramsError::Program { name, source };
    let program = ebpf.program_mut(name).ok_or(ProgramsError::Program {
        name,
        source: aya::programs::ProgramError::NotLoaded,
    })?;
    match name {
        CONNECT4 | CONNECT6 | GETPEERNAME4 | GETPEERNAME6 => {
            let program: &mut CgroupSockAddr = program.try_into().map_err(err)?;
            program.load().map_err(err)
        }
        FLOW_EVENTS => {
            let program: &mut SockOps = program.try_into().map_err(err)?;
            program.load().map_err(err)
        }
        _ => {
            let program: &mut CgroupSock = program.try_into().map_err(err)?;
            program.load().map_err(err)
        }
    }
}

fn attach_program(
    ebpf: &mut Ebpf,
    name: &'static str,
    cgroup: &File,
) -> Result<FdLink, ProgramsError> {
    let err = |source| ProgramsError::Program { name, source };
    let link_err = |source| ProgramsError::Link { name, source };
    let program = ebpf.program_mut(name).ok_or(ProgramsError::Program {
        name,
        source: aya::programs::ProgramError::NotLoaded,
    })?;
    // Links (bpf_link_create) always compose with other programs on the cgroup; `Single` is
    // the flag value the kernel accepts for them here (AllowMultiple fails with EINVAL).
    let mode = CgroupAttachMode::Single;
    let link: FdLink = match name {
        CONNECT4 | CONNECT6 | GETPEERNAME4 | GETPEERNAME6 => {
            let program: &mut CgroupSockAddr = program.try_into().map_err(err)?;
            let id = program.attach(cgroup, mode).map_err(err)?;
            program
                .take_link(id)
                .map_err(err)?
                .try_into()
                .map_err(link_err)?
        }
        FLOW_EVENTS => {
            let program: &mut SockOps = program.try_into().map_err(err)?;
            let id = program.attach(cgroup, mode).map_err(err)?;
            program
                .take_link(id)
                .map_err(err)?
                .try_into()
                .map_err(link_err)?
        }
        _ => {
            let program: &mut CgroupSock = program.try_into().map_err(err)?;
            let id = program.attach(cgroup, mode).map_err(err)?;
            program
                .take_link(id)
                .map_err(err)?
                .try_into()
                .map_err(link_err)?
        }
    };
    Ok(link)
}
