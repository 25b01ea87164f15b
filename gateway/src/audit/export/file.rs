//! NDJSON files: one OCSF event per line, synced before the cursor moves past them. Once the
//! file holds `max_bytes` it is renamed `path.1` (older ones move up to `path.<keep>`, the
//! oldest is removed) and a new one is started.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::PathBuf,
};

use super::{Outgoing, SinkError};
use crate::config::FileExport;

pub struct FileSink {
    settings: FileExport,
    file: Option<(File, u64)>,
}

impl FileSink {
    pub fn new(settings: FileExport) -> Self {
        Self {
            settings,
            file: None,
        }
    }

    /// Appends the events and syncs them.
    pub fn send(&mut self, events: &[Outgoing]) -> Result<(), SinkError> {
        let mut buffer = Vec::with_capacity(events.iter().map(|e| e.json.len() + 1).sum());
        for event in events {
            buffer.extend_from_slice(event.json.as_bytes());
            buffer.push(b'\n');
        }
        let result = self.write(&buffer);
        if result.is_err() {
            // Reopened (and its length read again) on the next try.
            self.file = None;
        }
        result
    }

    fn write(&mut self, buffer: &[u8]) -> Result<(), SinkError> {
        let path = &self.settings.path;
        let io = |what: &str, e: std::io::Error| {
            SinkError::Io(format!("{what} {}: {e}", path.display()))
        };
        let full = |len: u64| len > 0 && len + buffer.len() as u64 > self.settings.max_bytes;
        if self.file.is_none() {
            self.file = Some(self.open().map_err(|e| io("opening", e))?);
        }
        if self.file.as_ref().is_some_and(|(_, len)| full(*len)) {
            self.file = None;
            self.rotate().map_err(|e| io("rotating", e))?;
            self.file = Some(self.open().map_err(|e| io("opening", e))?);
        }
        let Some((file, len)) = self.file.as_mut() else {
            return Err(SinkError::Io(format!("{} is not open", path.display())));
        };
        file.write_all(buffer)
            .and_then(|()| file.sync_data())
            .map_err(|e| io("writing", e))?;
        *len += buffer.len() as u64;
        Ok(())
    }

    /// The file for appending, and its length.
    fn open(&self) -> std::io::Result<(File, u64)> {
        let path = &self.settings.path;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        let len = file.metadata()?.len();
        Ok((file, len))
    }

    fn rotate(&self) -> std::io::Result<()> {
        let path = &self.settings.path;
        let numbered = |n: u32| {
            let mut name = path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        let keep = self.settings.keep;
        if keep == 0 {
            return fs::remove_file(path);
        }
        let _ = fs::remove_file(numbered(keep));
        for n in (1..keep).rev() {
            match fs::rename(numbered(n), numbered(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::rename(path, numbered(1))?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}
