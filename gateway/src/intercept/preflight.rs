//! `tollgate run` refuses early, with a message that says what to do, when the host cannot
//! support interception.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "tollgate run needs root privileges (CAP_NET_ADMIN and CAP_BPF or CAP_SYS_ADMIN) to attach \
         eBPF programs and install nftables rules; run it as root (e.g. `sudo tollgate run --config ...`)"
    )]
    NotPrivileged,
    #[error(
        "no cgroup v2 hierarchy is mounted; Tollgate selects agents by cgroup v2. Mount one with \
         `mount -t cgroup2 none /sys/fs/cgroup/unified` (hybrid hosts) or boot with systemd.unified_cgroup_hierarchy=1"
    )]
    NoCgroup2,
    #[error(
        "the kernel exposes no BTF at /sys/kernel/btf/vmlinux; Tollgate needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (Linux 5.8 or later from a mainstream distribution)"
    )]
    NoBtf,
    #[error("the `nft` command was not found; install the nftables package (`apt-get install nftables`)")]
    NoNft,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct HostFacts {
    pub cgroup2_root: PathBuf,
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

pub fn check() -> Result<HostFacts, PreflightError> {
    let status = read("/proc/self/status")?;
    let caps = effective_capabilities(&status).unwrap_or(0);
    let has = |cap: u32| caps & (1 << cap) != 0;
    if !(has(CAP_NET_ADMIN) && (has(CAP_BPF) || has(CAP_SYS_ADMIN))) {
        return Err(PreflightError::NotPrivileged);
    }
    let cgroup2_root =
        cgroup2_mount(&read("/proc/self/mountinfo")?).ok_or(PreflightError::NoCgroup2)?;
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(PreflightError::NoBtf);
    }
    if !command_on_path("nft") {
        return Err(PreflightError::NoNft);
    }
    Ok(HostFacts { cgroup2_root })
}

fn read(path: &str) -> Result<String, PreflightError> {
    std::fs::read_to_string(path).map_err(|source| PreflightError::Read {
        path: path.into(),
        source,
    })
}

fn effective_capabilities(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup` or `/sys/fs/cgroup/unified`).
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // "<id> <parent> <maj:min> <root> <mount point> <options> ... - <fstype> <source> <super options>"
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mount_point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

fn command_on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_on_a_hybrid_host() {
        let mountinfo = "\
34 25 0:29 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
35 34 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev shared:10 - cgroup2 cgroup2 rw,nsdelegate
36 34 0:31 / /sys/fs/cgroup/cpu rw shared:11 - cgroup cgroup rw,cpu";
        assert_eq!(
            cgroup2_mount(mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_mount("36 34 0:31 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu"),
            None
        );
    }

    #[test]
    fn reads_effective_capabilities() {
        let status = "Name:\ttollgate\nCapEff:\t000001ffffffffff\n";
        let caps = effective_capabilities(status).expect("CapEff parsed");
        assert!(caps & (1 << CAP_BPF) != 0);
        assert_eq!(effective_capabilities("CapEff:\t0000000000000000"), Some(0));
    }
}
