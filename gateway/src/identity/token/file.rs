//! Keys from a JWKS file, re-read (at most once a second, and only if it changed) when a token
//! names a key the set does not hold, so rotated keys are picked up.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use jsonwebtoken::jwk::Jwk;

use super::{keys, TokenError};

/// A token naming an unknown key re-reads the JWKS at most this often.
pub(super) const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

struct KeySet {
    keys: Vec<Jwk>,
    modified: Option<SystemTime>,
    checked: Instant,
}

pub(super) struct FileKeys {
    path: PathBuf,
    field: String,
    set: Mutex<KeySet>,
}

impl FileKeys {
    /// Reads the file now, so a missing or broken one stops startup.
    pub(super) fn open(path: &Path, field: String) -> Result<Self, String> {
        Ok(Self {
            set: Mutex::new(read(path)?),
            path: path.to_owned(),
            field,
        })
    }

    /// No await in here: the std Mutex is never held across one.
    pub(super) fn key_for(&self, kid: Option<&str>) -> Result<Jwk, TokenError> {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(jwk) = keys::find(&set.keys, kid)? {
            return Ok(jwk);
        }
        if set.checked.elapsed() >= RELOAD_INTERVAL {
            set.checked = Instant::now();
            let modified = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
            if modified != set.modified {
                match read(&self.path) {
                    Ok(fresh) => {
                        tracing::info!(jwks = %self.path.display(), keys = fresh.keys.len(), "JWKS reloaded");
                        *set = fresh;
                    }
                    Err(detail) => {
                        tracing::warn!(field = %self.field, %detail, "JWKS reload failed; keeping the keys held");
                    }
                }
            }
        }
        keys::find(&set.keys, kid)?
            .ok_or_else(|| TokenError::UnknownKey(kid.unwrap_or("").to_owned()))
    }
}

fn read(path: &Path) -> Result<KeySet, String> {
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Ok(KeySet {
        keys: keys::parse_keys(&text)?,
        modified,
        checked: Instant::now(),
    })
}
