//! Agent cgroups (cgroup v2), removed on Drop.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

/// Mount point of the cgroup v2 hierarchy on this host.
pub fn cgroup2_root() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
}

pub struct AgentCgroup {
    /// As in /proc/PID/cgroup, e.g. "/tollgate-test-123".
    pub path: String,
    pub dir: PathBuf,
}

impl AgentCgroup {
    pub fn create(name: &str) -> std::io::Result<Self> {
        let path = format!("/{name}");
        let dir = cgroup2_root().join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(Self { path, dir })
    }

    /// A child cgroup (to show that descendants are covered).
    pub fn child(&self, name: &str) -> std::io::Result<Self> {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            path: format!("{}/{name}", self.path),
            dir,
        })
    }

    /// A command that runs `program args...` inside this cgroup, under the same pid (the shell
    /// moves itself in and then execs), so the caller knows the agent's pid.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("echo $$ > \"$0\" && exec \"$@\"")
            .arg(self.dir.join("cgroup.procs"))
            .arg(program);
        command
    }

    /// [`Self::command`] inside network namespace `netns` (`/run/netns/<name>`).
    pub fn command_in(&self, netns: &str, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["sh", "-c", "echo $$ > \"$0\" && exec \"$@\""])
            .arg(self.dir.join("cgroup.procs"))
            .arg(program);
        command
    }

    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for AgentCgroup {
    fn drop(&mut self) {
        // Our own processes have exited by now; give the kernel a moment to release them.
        for _ in 0..50 {
            if remove_tree(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn remove_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}
