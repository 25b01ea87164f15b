//! The backstop behind the `connect_unix` redirect: an LSM program on `unix_stream_connect`
//! that refuses an agent's connect to a protected server's socket, whatever name led there (a
//! symlink, a hard link, a relative path, `/proc/PID/root/...`). It runs after the kernel has
//! found the listening socket and compares the name that socket was bound to.
//!
//! It needs the BPF LSM to be active (`bpf` in the kernel's `lsm=` list). Whether it is cannot
//! be read reliably (securityfs is often not mounted), so the gateway checks it works: it
//! binds a socket of its own, marks it refused for everyone and connects to it through a
//! symlink. The names protected are the configured paths and the names the servers behind
//! them were bound to (`/proc/net/unix`), re-read with the host's listeners.

use std::{
    collections::BTreeSet,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
};

use aya::{
    maps::{HashMap, MapData},
    programs::{links::FdLink, Lsm},
    Btf, Ebpf, EbpfLoader,
};
use gateway_common::{unix_server, UnixPathKey, UNIX_PATH_LEN};

use super::kernel_btf::{self, BtfError};

pub const UNIX_STREAM_CONNECT: &str = "tollgate_unix_stream_connect";
const MAP: &str = "UNIX_SERVERS";

#[derive(Debug, thiserror::Error)]
pub enum BackstopError {
    #[error("kernel struct layout: {0}")]
    Layout(#[from] BtfError),
    #[error("kernel BTF: {0}")]
    Btf(#[from] aya::BtfError),
    #[error("program `{UNIX_STREAM_CONNECT}`: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error(
        "the kernel refused the LSM program `{UNIX_STREAM_CONNECT}` ({0}); it needs \
         CONFIG_BPF_LSM and BPF trampolines, which some kernels (and hypervisors) do not allow"
    )]
    Refused(aya::programs::ProgramError),
    #[error("program `{UNIX_STREAM_CONNECT}`: its link cannot be pinned: {0}")]
    Link(#[from] aya::programs::links::LinkError),
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("map `{MAP}`: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error(
        "the LSM hook does not run on this kernel (the BPF LSM is not active: add `bpf` to the \
         kernel's `lsm=` boot parameter): {0}"
    )]
    NotEnforced(String),
}

/// Where the program reads a listening socket's bound name, for the running kernel.
pub struct Layout {
    sock_addr: u32,
    address_len: u32,
    address_name: u32,
}

impl Layout {
    pub fn of_running_kernel() -> Result<Self, BtfError> {
        Ok(Self {
            sock_addr: kernel_btf::field_offset("unix_sock", "addr")?,
            address_len: kernel_btf::field_offset("unix_address", "len")?,
            address_name: kernel_btf::field_offset("unix_address", "name")?,
        })
    }

    /// Sets the program's load-time globals.
    pub fn apply<'a>(&'a self, loader: &mut EbpfLoader<'a>) {
        loader
            .override_global("UNIX_SOCK_ADDR_OFFSET", &self.sock_addr, true)
            .override_global("UNIX_ADDRESS_LEN_OFFSET", &self.address_len, true)
            .override_global("UNIX_ADDRESS_NAME_OFFSET", &self.address_name, true);
    }
}

/// The attached backstop and the names it refuses.
pub struct UnixBackstop {
    servers: HashMap<MapData, UnixPathKey, u8>,
    /// The configured paths (each as written and through its canonical directory).
    configured: Vec<PathBuf>,
    /// Every name in the map now.
    names: BTreeSet<Vec<u8>>,
}

impl UnixBackstop {
    /// Loads, attaches and pins the program (its link in `generation`, so a crashed gateway
    /// leaves it refusing), then checks that it refuses.
    pub fn attach(
        ebpf: &mut Ebpf,
        generation: &Path,
        configured: Vec<PathBuf>,
    ) -> Result<Self, BackstopError> {
        let btf = Btf::from_sys_fs()?;
        let program: &mut Lsm = ebpf
            .program_mut(UNIX_STREAM_CONNECT)
            .ok_or(aya::programs::ProgramError::NotLoaded)?
            .try_into()?;
        program
            .load("unix_stream_connect", &btf)
            .map_err(BackstopError::Refused)?;
        let id = program.attach()?;
        let link: FdLink = program.take_link(id)?.into();
        let map = ebpf.take_map(MAP).ok_or(aya::maps::MapError::InvalidName {
            name: MAP.to_owned(),
        })?;
        let mut backstop = Self {
            servers: HashMap::try_from(map)?,
            configured,
            names: BTreeSet::new(),
        };
        // Until pinned, the link detaches when dropped: a program that fails the check is gone.
        backstop.check_it_refuses()?;
        let path = generation.join(format!("link_{UNIX_STREAM_CONNECT}"));
        link.pin(&path)
            .map_err(|source| BackstopError::Pin { path, source })?;
        backstop.refresh(Path::new("/proc"));
        Ok(backstop)
    }

    /// Makes the map hold the configured paths and the names their servers are bound to now.
    pub fn refresh(&mut self, proc_root: &Path) {
        let listening = std::fs::read_to_string(proc_root.join("net/unix"))
            .map(|text| listening_names(&text))
            .unwrap_or_default();
        let wanted = protected_names(&self.configured, &listening);
        for name in wanted.difference(&self.names) {
            if let Some(key) = key(name) {
                if let Err(error) = self.servers.insert(key, unix_server::AGENTS, 0) {
                    tracing::error!(%error, "unix backstop: could not protect a socket name");
                }
            }
        }
        for name in self.names.difference(&wanted) {
            if let Some(key) = key(name) {
                let _ = self.servers.remove(&key);
            }
        }
        self.names = wanted;
    }

    /// The names refused now, for `status`.
    pub fn names(&self) -> Vec<String> {
        self.names
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    /// Binds a socket, marks it refused for everyone and connects through a symlink: only a
    /// program that runs and reads the resolved socket refuses that. A socket not marked must
    /// still connect, or the program would refuse what it should not.
    fn check_it_refuses(&mut self) -> Result<(), BackstopError> {
        let dir = std::env::temp_dir().join(format!("tollgate-lsm-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let result = self.refuses_in(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    fn refuses_in(&mut self, dir: &Path) -> Result<(), BackstopError> {
        let failed = |what: &str, error: std::io::Error| {
            BackstopError::NotEnforced(format!("{what}: {error}"))
        };
        std::fs::create_dir_all(dir).map_err(|e| failed("creating the check directory", e))?;
        let socket = dir.join("s");
        let link = dir.join("l");
        let _listener = std::os::unix::net::UnixListener::bind(&socket)
            .map_err(|e| failed("binding the check socket", e))?;
        std::os::unix::fs::symlink(&socket, &link).map_err(|e| failed("linking to it", e))?;
        let name = socket.as_os_str().as_bytes().to_vec();
        let key = key(&name).ok_or_else(|| {
            BackstopError::NotEnforced(format!("{}: path too long", socket.display()))
        })?;
        std::os::unix::net::UnixStream::connect(&link)
            .map_err(|e| failed("connecting to a socket nobody refuses", e))?;
        self.servers.insert(key, unix_server::EVERYONE, 0)?;
        let connected = std::os::unix::net::UnixStream::connect(&link);
        let _ = self.servers.remove(&key);
        match connected {
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => Ok(()),
            Err(error) => Err(failed("the check connect failed otherwise", error)),
            Ok(_) => Err(BackstopError::NotEnforced(
                "a connect the program refuses went through".to_owned(),
            )),
        }
    }
}

/// The map key of a name: its bytes zero-filled; None when it does not fit.
fn key(name: &[u8]) -> Option<UnixPathKey> {
    if name.is_empty() || name.len() >= UNIX_PATH_LEN || name.contains(&0) {
        return None;
    }
    let mut key = UnixPathKey {
        path: [0; UNIX_PATH_LEN],
    };
    key.path[..name.len()].copy_from_slice(name);
    Some(key)
}

/// Bound names of listening sockets in `/proc/net/unix` (flag `__SO_ACCEPTCON`, 0x10000).
pub fn listening_names(text: &str) -> Vec<PathBuf> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
            let path = fields.get(7)?;
            (flags & 0x1_0000 != 0 && path.starts_with('/')).then(|| PathBuf::from(path))
        })
        .collect()
}

/// The configured paths, and each listening name that is the same file as one of them.
fn protected_names(configured: &[PathBuf], listening: &[PathBuf]) -> BTreeSet<Vec<u8>> {
    let file = |path: &Path| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let configured_files: Vec<(u64, u64)> = configured.iter().filter_map(|p| file(p)).collect();
    let mut names: BTreeSet<Vec<u8>> = configured
        .iter()
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .collect();
    for name in listening {
        if file(name).is_some_and(|f| configured_files.contains(&f)) {
            names.insert(name.as_os_str().as_bytes().to_vec());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_read_with_their_bound_names() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 20110 /run/postgresql/.s.PGSQL.5432\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 20111 /run/postgresql/.s.PGSQL.5432\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 20112 @/tmp/abstract\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 20113\n";
        assert_eq!(
            listening_names(text),
            vec![PathBuf::from("/run/postgresql/.s.PGSQL.5432")]
        );
    }

    #[test]
    fn a_server_bound_by_another_name_of_the_configured_file_is_protected_by_that_name() {
        let dir = std::env::temp_dir().join(format!("tollgate-backstop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let real = dir.join("real.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&real).unwrap();
        let configured = dir.join("configured");
        let _ = std::fs::remove_file(&configured);
        std::os::unix::fs::symlink(&real, &configured).unwrap();
        let other = dir.join("other.sock");
        let _other = std::os::unix::net::UnixListener::bind(&other).unwrap();

        let names = protected_names(std::slice::from_ref(&configured), &[real.clone(), other]);
        std::fs::remove_dir_all(&dir).unwrap();
        let expected: BTreeSet<Vec<u8>> = [configured, real]
            .iter()
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn keys_are_zero_filled_and_refuse_what_does_not_fit() {
        let key = key(b"/a").unwrap();
        assert_eq!(&key.path[..3], b"/a\0");
        assert!(key.path[2..].iter().all(|&b| b == 0));
        assert!(super::key(&[b'a'; UNIX_PATH_LEN]).is_none());
        assert!(super::key(b"").is_none());
        assert!(super::key(b"a\0b").is_none());
    }
}
