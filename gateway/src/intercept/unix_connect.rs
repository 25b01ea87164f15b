//! Agents' `connect()` to a protected server's unix socket (`psql` without `-h`), with the
//! cgroup `connect_unix` hook of kernels 6.7+: pointed at the gateway's own socket for that path.
//!
//! aya 0.14 can neither parse a `cgroup/connect_unix` section nor resolve kfunc calls, and its
//! `CgroupSockAddr` has no unix attach types, so this program is built in `program.rs` and
//! loaded, attached and pinned here with the `bpf()` syscall. It shares the agent selection
//! maps of the aya-loaded object; its own map (`UNIX_PATHS`) is created here.

mod program;

use std::{
    ffi::CString,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use aya::{
    maps::{HashMap, IterableMap, Map, MapData},
    Ebpf,
};
use gateway_common::{UnixPathKey, UnixRedirect, UNIX_PATH_LEN};

pub const CONNECT_UNIX: &str = "tollgate_connect_unix";

#[derive(Debug, thiserror::Error)]
pub enum UnixConnectError {
    /// The kernel has no `connect_unix` hook (before 6.7) or lacks its kfuncs.
    #[error("this kernel has no cgroup connect_unix hook ({0})")]
    HookMissing(String),
    #[error("{call}: {source}")]
    Syscall {
        call: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel refused the connect_unix program: {source}\n{log}")]
    Verifier {
        #[source]
        source: std::io::Error,
        log: String,
    },
    #[error("map `{name}` is missing from the eBPF object")]
    MissingMap { name: &'static str },
    #[error("UNIX_PATHS: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("{0}: a unix socket path must be 1 to 107 bytes")]
    PathLength(PathBuf),
}

/// A protected path and the gateway socket its agent connects go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixRedirectRule {
    pub protected: PathBuf,
    pub gateway: PathBuf,
}

/// The loaded program; its links are pinned per attach point by [`UnixConnect::attach`].
pub struct UnixConnect {
    program: OwnedFd,
    /// Kept for the life of the gateway: the program holds its own reference as well.
    _paths: HashMap<MapData, UnixPathKey, UnixRedirect>,
}

/// Whether agents' connects to protected unix sockets are pointed at the gateway: asked for
/// (`gateway.unix_agents = "serve"`, the default) and possible on this kernel.
pub fn serves(config: &crate::config::Config) -> bool {
    config.gateway.unix_agents == crate::config::UnixAgents::Serve && probe().is_ok()
}

/// Whether this kernel has the `connect_unix` hook: its kfunc is in the kernel's BTF (6.7+).
pub fn probe() -> Result<(), UnixConnectError> {
    kfunc_ids().map(|_| ())
}

/// (`bpf_cast_to_kern_ctx`, `bpf_sock_addr_set_sun_path`) in vmlinux BTF.
fn kfunc_ids() -> Result<(u32, u32), UnixConnectError> {
    let btf = aya::Btf::from_sys_fs()
        .map_err(|error| UnixConnectError::HookMissing(format!("no kernel BTF: {error}")))?;
    let kfunc = |name: &str| {
        btf.id_by_type_name_kind(name, aya_obj::btf::BtfKind::Func)
            .map_err(|_| UnixConnectError::HookMissing(format!("no kfunc {name} in kernel BTF")))
    };
    Ok((
        kfunc("bpf_cast_to_kern_ctx")?,
        kfunc("bpf_sock_addr_set_sun_path")?,
    ))
}

impl UnixConnect {
    /// Creates `UNIX_PATHS` with `rules` and loads the program against the agent maps of `ebpf`.
    pub fn load(ebpf: &Ebpf, rules: &[UnixRedirectRule]) -> Result<Self, UnixConnectError> {
        let (cast_to_kern_ctx, set_sun_path) = kfunc_ids()?;

        let paths_fd = create_paths_map(rules.len().max(1))?;
        let mut paths: HashMap<MapData, UnixPathKey, UnixRedirect> =
            HashMap::try_from(Map::HashMap(MapData::from_fd(paths_fd)?))?;
        for rule in rules {
            paths.insert(path_key(&rule.protected)?, redirect(&rule.gateway)?, 0)?;
        }
        let inputs = program::Inputs {
            agent_uids_fd: map_fd(ebpf, "AGENT_UIDS")?,
            agent_cgroups_fd: map_fd(ebpf, "AGENT_CGROUPS")?,
            unix_paths_fd: IterableMap::map(&paths).fd().as_fd().as_raw_fd(),
            cast_to_kern_ctx,
            set_sun_path,
        };
        let program = load_program(&program::build(&inputs))?;
        Ok(Self {
            program,
            _paths: paths,
        })
    }

    /// Attaches to one cgroup and pins the link at `pin`, so it outlives the process.
    pub fn attach(&self, cgroup: &std::fs::File, pin: &Path) -> Result<(), UnixConnectError> {
        let link = link_create(&self.program, cgroup)?;
        obj_pin(&link, pin)
    }

    pub fn pin_program(&self, pin: &Path) -> Result<(), UnixConnectError> {
        obj_pin(&self.program, pin)
    }
}

/// The map entries for the configured routes: each protected path as written and as the
/// kernel would also reach it through a symlinked directory (`/var/run` is `/run` on Debian),
/// since the program compares path text, not files.
pub fn rules(routes: &[crate::config::UnixRoute]) -> Vec<UnixRedirectRule> {
    let mut rules: Vec<UnixRedirectRule> = Vec::new();
    for route in routes {
        for protected in spellings(&route.protected) {
            if !rules.iter().any(|r| r.protected == protected) {
                rules.push(UnixRedirectRule {
                    protected,
                    gateway: route.gateway.clone(),
                });
            }
        }
    }
    rules
}

/// `path`, and the same file through the canonical form of its directory.
fn spellings(path: &Path) -> Vec<PathBuf> {
    let mut out = vec![path.to_owned()];
    let canonical = path
        .parent()
        .and_then(|dir| dir.canonicalize().ok())
        .zip(path.file_name())
        .map(|(dir, name)| dir.join(name));
    // The directory may not exist yet (the server has not started): /var/run is still /run.
    let by_var_run = path
        .strip_prefix("/var/run")
        .ok()
        .filter(|_| Path::new("/var/run").canonicalize().ok() == Some(PathBuf::from("/run")))
        .map(|rest| Path::new("/run").join(rest));
    for other in [canonical, by_var_run].into_iter().flatten() {
        if !out.contains(&other) {
            out.push(other);
        }
    }
    out
}

/// The map key for a path: its bytes, zero-filled (as the program builds it).
pub fn path_key(path: &Path) -> Result<UnixPathKey, UnixConnectError> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= UNIX_PATH_LEN || bytes.contains(&0) {
        return Err(UnixConnectError::PathLength(path.to_owned()));
    }
    let mut key = UnixPathKey {
        path: [0; UNIX_PATH_LEN],
    };
    key.path[..bytes.len()].copy_from_slice(bytes);
    Ok(key)
}

fn redirect(gateway: &Path) -> Result<UnixRedirect, UnixConnectError> {
    let key = path_key(gateway)?;
    Ok(UnixRedirect {
        path: key.path,
        len: gateway.as_os_str().len() as u32,
    })
}

fn map_fd(ebpf: &Ebpf, name: &'static str) -> Result<i32, UnixConnectError> {
    match ebpf.map(name) {
        Some(Map::HashMap(data)) => Ok(data.fd().as_fd().as_raw_fd()),
        _ => Err(UnixConnectError::MissingMap { name }),
    }
}

// The bpf() commands and types used here (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
const BPF_CGROUP_UNIX_CONNECT: u32 = 49;

/// The leading fields of `union bpf_attr` for BPF_MAP_CREATE; the kernel zero-fills the rest.
#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
}

#[repr(C)]
struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// `bpf(cmd, attr, sizeof attr)`.
fn bpf_call<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: attr is a live repr(C) prefix of union bpf_attr of the size passed; the kernel
    // reads (and for some commands writes) only that many bytes, and every pointer in it
    // outlives the call.
    #[expect(unsafe_code, reason = "bpf(2) for what aya 0.14 cannot do")]
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A command that returns a new file descriptor.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<OwnedFd> {
    let fd = bpf_call(cmd, attr)?;
    // SAFETY: these commands return a new descriptor that nothing else owns.
    #[expect(unsafe_code, reason = "adopting the descriptor bpf(2) returned")]
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn create_paths_map(entries: usize) -> Result<OwnedFd, UnixConnectError> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_HASH,
        key_size: std::mem::size_of::<UnixPathKey>() as u32,
        value_size: std::mem::size_of::<UnixRedirect>() as u32,
        max_entries: entries as u32,
        map_flags: 0,
    };
    bpf(BPF_MAP_CREATE, &mut attr).map_err(|source| UnixConnectError::Syscall {
        call: "BPF_MAP_CREATE UNIX_PATHS",
        source,
    })
}

fn load_program(insns: &[program::Insn]) -> Result<OwnedFd, UnixConnectError> {
    const LICENSE: &[u8] = b"GPL\0";
    let mut name = [0u8; 16];
    let short = b"tg_connect_unix";
    name[..short.len()].copy_from_slice(short);
    let mut log = vec![0u8; 1 << 20];
    let attempt = |log_level: u32, log: &mut [u8]| {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            log_level,
            log_size: if log_level == 0 { 0 } else { log.len() as u32 },
            log_buf: if log_level == 0 {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
            prog_ifindex: 0,
            // Without it the verifier refuses the kfunc and the unix fields of the context.
            expected_attach_type: BPF_CGROUP_UNIX_CONNECT,
        };
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    match attempt(0, &mut log) {
        Ok(fd) => Ok(fd),
        Err(source) => {
            // Again with the verifier's log, to say why.
            let _ = attempt(1, &mut log);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let tail: Vec<&str> = text.lines().rev().take(12).collect();
            let log = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
            Err(UnixConnectError::Verifier { source, log })
        }
    }
}

fn link_create(program: &OwnedFd, cgroup: &std::fs::File) -> Result<OwnedFd, UnixConnectError> {
    let mut attr = LinkCreateAttr {
        prog_fd: program.as_raw_fd() as u32,
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_UNIX_CONNECT,
        flags: 0,
    };
    bpf(BPF_LINK_CREATE, &mut attr).map_err(|source| UnixConnectError::Syscall {
        call: "BPF_LINK_CREATE connect_unix",
        source,
    })
}

fn obj_pin(fd: &OwnedFd, path: &Path) -> Result<(), UnixConnectError> {
    let pin_error = |source| UnixConnectError::Syscall {
        call: "BPF_OBJ_PIN",
        source,
    };
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| pin_error(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    let mut attr = ObjPinAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        file_flags: 0,
    };
    bpf_call(BPF_OBJ_PIN, &mut attr).map_err(pin_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_key_is_its_bytes_zero_filled() {
        let key = path_key(Path::new("/var/run/postgresql/.s.PGSQL.5432")).expect("key");
        assert_eq!(&key.path[..33], b"/var/run/postgresql/.s.PGSQL.5432");
        assert!(key.path[33..].iter().all(|&b| b == 0));
        let long = PathBuf::from(format!("/{}", "x".repeat(UNIX_PATH_LEN)));
        assert!(path_key(&long).is_err());
    }
}
