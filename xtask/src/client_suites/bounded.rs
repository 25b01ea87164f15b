//! Runs a suite's process with a bound on its wall time. The process leads its own process
//! group, so a run cut off at the bound takes its children (`psql` under `pg_regress`) with it,
//! and none is left holding the output pipes.

use std::{
    io::Read,
    os::unix::process::CommandExt,
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

/// How a bounded run ended.
pub struct Bounded {
    /// `None` when the run was killed at the bound.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Bounded {
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The exit status, or that it was killed, for messages.
    pub fn ending(&self) -> String {
        match self.status {
            Some(status) => status.to_string(),
            None => format!("killed after {:.1} s", self.elapsed.as_secs_f64()),
        }
    }
}

/// Runs `command` (stdin closed, output captured) and kills its process group at `limit`.
pub fn run_bounded(mut command: Command, limit: Duration) -> std::io::Result<Bounded> {
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn()?;
    let group = child.id();
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() >= limit {
            // Not reaped yet, so the group id cannot have been reused.
            kill_group(group);
            child.wait()?;
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    Ok(Bounded {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed,
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buffer);
        }
        String::from_utf8_lossy(&buffer).into_owned()
    })
}

fn kill_group(group: u32) {
    if let Ok(group) = libc::pid_t::try_from(group) {
        // SAFETY: signals the process group this module created for its own child.
        #[expect(unsafe_code, reason = "kill(2) of a process group has no std wrapper")]
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}
