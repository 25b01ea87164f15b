//! bpffs: Tollgate pins its programs, links and maps so interception outlives the process (a link
//! held only by file descriptors detaches when the process dies, and agents would bypass).
//! Each run pins into a fresh generation directory; older generations are removed only after the
//! new one is attached.

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("{dir} is not on a bpffs mount and mounting bpffs at {mount} failed: {source}")]
    Mount {
        dir: PathBuf,
        mount: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BpffsError + '_ {
    move |source| BpffsError::Io {
        path: path.to_owned(),
        source,
    }
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const DEFAULT_MOUNT: &str = "/sys/fs/bpf";

/// Makes sure `dir` lives on bpffs, mounting bpffs at /sys/fs/bpf if nothing is mounted there.
pub fn ensure_mounted(dir: &Path) -> Result<(), BpffsError> {
    let mount = Path::new(DEFAULT_MOUNT);
    if !is_bpffs(mount) {
        mount_bpffs(mount).map_err(|source| BpffsError::Mount {
            dir: dir.to_owned(),
            mount: mount.to_owned(),
            source,
        })?;
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    if !is_bpffs(dir) {
        return Err(BpffsError::Mount {
            dir: dir.to_owned(),
            mount: mount.to_owned(),
            source: std::io::Error::other("gateway.bpffs_dir must be below a bpffs mount"),
        });
    }
    Ok(())
}

pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut stat: libc::statfs = unsafe_zeroed_statfs();
    // SAFETY: c_path is NUL-terminated and stat is a valid, writable statfs.
    #[expect(unsafe_code, reason = "statfs(2) has no safe std wrapper")]
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    rc == 0 && stat.f_type == BPF_FS_MAGIC
}

fn unsafe_zeroed_statfs() -> libc::statfs {
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    #[expect(unsafe_code, reason = "zero-initialising a C struct")]
    unsafe {
        std::mem::zeroed()
    }
}

fn mount_bpffs(mount: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(mount)?;
    let target = CString::new(mount.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let (source, fstype, data) = (c"bpf", c"bpf", c"mode=0700");
    // SAFETY: all pointers are NUL-terminated strings that outlive the call.
    #[expect(unsafe_code, reason = "mount(2) has no safe std wrapper")]
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Creates a fresh generation directory for this run.
pub fn new_generation(dir: &Path) -> Result<PathBuf, BpffsError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = dir.join(format!("gen-{nanos}-{}", std::process::id()));
    std::fs::create_dir(&path).map_err(io(&path))?;
    Ok(path)
}

/// Generation directories under `dir`, oldest first.
pub fn generations(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|n| n.as_bytes().starts_with(b"gen-"))
        })
        .collect();
    found.sort();
    found
}

/// Unpinning detaches the links of a generation whose process is gone.
pub fn remove_other_generations(dir: &Path, keep: &Path) -> Result<(), BpffsError> {
    for generation in generations(dir).into_iter().filter(|g| g != keep) {
        remove_generation(&generation)?;
    }
    Ok(())
}

pub fn remove_generation(generation: &Path) -> Result<(), BpffsError> {
    match std::fs::remove_dir_all(generation) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(io(generation)(error)),
        _ => Ok(()),
    }
}
