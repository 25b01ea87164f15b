//! Requests waiting for approval, kept under `state_dir/approvals/` while they wait: one file
//! each, removed when decided. A gateway that stops (or dies) loses their connections, so
//! whatever is left at the next start was abandoned: it is recorded as such, never resumed.
//! The last id given is kept too, so ids are never reused across restarts.

use std::{
    fs,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use crate::audit::Event;

const NEXT_ID: &str = "next-id";

pub struct Kept {
    dir: PathBuf,
    /// The next id on disk; writers of it take turns (one temporary file).
    next_id: std::sync::Mutex<u64>,
}

/// What a previous run left: the next id to give, and the requests it left waiting (as their
/// `approval_requested` events).
pub struct Leftovers {
    pub next_id: u64,
    pub abandoned: Vec<Event>,
}

impl Kept {
    /// Opens (creating) the directory and reads what a previous run left, removing it.
    pub fn open(dir: &Path) -> std::io::Result<(Self, Leftovers)> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut next_id = fs::read_to_string(dir.join(NEXT_ID))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .unwrap_or(1);
        let mut abandoned = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(id) = pending_id(&path) else {
                continue;
            };
            next_id = next_id.max(id + 1);
            // A file cut short by a crash still names its id.
            if let Some(event) = fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Event>(&bytes).ok())
            {
                abandoned.push(event);
            } else {
                tracing::warn!(file = %path.display(), "unreadable pending approval left by a previous run");
            }
            fs::remove_file(&path)?;
        }
        let kept = Self {
            dir: dir.to_owned(),
            next_id: std::sync::Mutex::new(next_id),
        };
        Ok((kept, Leftovers { next_id, abandoned }))
    }

    /// Notes that ids up to `next` (exclusive) are given.
    pub fn ids_given(&self, next: u64) -> std::io::Result<()> {
        let mut on_disk = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
        if next <= *on_disk {
            return Ok(());
        }
        crate::durable::replace(&self.dir.join(NEXT_ID), next.to_string().as_bytes())?;
        *on_disk = next;
        Ok(())
    }

    pub fn waiting(&self, id: u64, requested: &Event) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(requested).unwrap_or_default();
        crate::durable::replace(&self.dir.join(format!("pending-{id}.json")), &bytes)
    }

    pub fn decided(&self, id: u64) {
        let _ = fs::remove_file(self.dir.join(format!("pending-{id}.json")));
    }
}

fn pending_id(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("pending-")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}
