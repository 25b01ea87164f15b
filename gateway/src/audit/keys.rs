//! The key that signs checkpoints: Ed25519 in the C2SP note format, generated on first run
//! (mode 0600) or read from `audit.key_file`.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use super::{note::SigningKey, AuditError};

/// The key at `path`, made for `name` when there is none yet.
pub fn load_or_create(path: &Path, name: &str) -> Result<SigningKey, AuditError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => create(path, name),
        Err(error) => Err(AuditError::io(format!("reading {}", path.display()), error)),
    }
}

/// The key at `path`, which must exist.
pub fn load(path: &Path) -> Result<SigningKey, AuditError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AuditError::io(format!("reading {}", path.display()), e))?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<SigningKey, AuditError> {
    SigningKey::from_text(text.trim()).map_err(|e| AuditError::Key {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

fn create(path: &Path, name: &str) -> Result<SigningKey, AuditError> {
    let key = SigningKey::generate(name).map_err(|e| AuditError::Key {
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| AuditError::io(format!("creating {}", dir.display()), e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| AuditError::io(format!("creating {}", path.display()), e))?;
    file.write_all(format!("{}\n", key.to_text()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| AuditError::io(format!("writing {}", path.display()), e))?;
    tracing::info!(
        event = "audit.key_created",
        path = %path.display(),
        verifier = %key.verifier().to_text(),
        "generated the audit log's signing key"
    );
    Ok(key)
}
