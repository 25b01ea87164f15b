//! The policy in force, swapped whole on reload. A file that fails validation never replaces
//! the one in force; sessions pick the new one up at their next statement.

use std::{
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::SystemTime,
};

use super::{load::load, mask::TokenKey, rules::Policy, PolicyError};

/// One loaded policy with its generation (sessions re-match their identity when it changes).
pub struct Loaded {
    pub policy: Policy,
    pub generation: u64,
}

pub struct PolicyStore {
    path: PathBuf,
    current: RwLock<Arc<Loaded>>,
    generations: AtomicU64,
    /// Modification time of the file in force, to notice edits.
    modified: RwLock<Option<SystemTime>>,
    pub token_key: Arc<TokenKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("tokenization key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
}

impl PolicyStore {
    /// Loads the policy and its tokenization key (created on first run when missing).
    pub fn open(path: &Path, state_dir: &Path) -> Result<Self, StoreError> {
        let modified = modified(path);
        let policy = load(path)?;
        let key_file = policy
            .token_key_file
            .clone()
            .unwrap_or_else(|| state_dir.join("tokenization.key"));
        let token_key = Arc::new(token_key(&key_file)?);
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(Loaded {
                policy,
                generation: 1,
            })),
            generations: AtomicU64::new(1),
            modified: RwLock::new(modified),
            token_key,
        })
    }

    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Validates the file again and puts it in force; on error the old policy stays.
    pub fn reload(&self) -> Result<u64, PolicyError> {
        let modified_at = modified(&self.path);
        let result = load(&self.path);
        // Remember this version either way, so a bad file is reported once, not every poll.
        *self.modified.write().unwrap_or_else(|p| p.into_inner()) = modified_at;
        let policy = result?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Loaded { policy, generation });
        Ok(generation)
    }

    /// The file changed since it was last read.
    pub fn changed_on_disk(&self) -> bool {
        modified(&self.path) != *self.modified.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads the 32-byte key, or creates it (mode 0600) when the file does not exist. An
/// existing key readable by others is refused: tokens are only as safe as the key.
fn token_key(path: &Path) -> Result<TokenKey, StoreError> {
    let error = |detail: String| StoreError::Key {
        path: path.to_owned(),
        detail,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path)
                .map_err(|e| error(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(error(format!(
                    "readable by group or others (mode {:o}); run chmod 600 on it",
                    mode & 0o777
                )));
            }
            let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
                error(format!("must hold exactly 32 bytes, holds {}", b.len()))
            })?;
            Ok(TokenKey::from_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| error(e.to_string()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| error(e.to_string()))?;
            file.write_all(&bytes).map_err(|e| error(e.to_string()))?;
            file.sync_all().map_err(|e| error(e.to_string()))?;
            tracing::info!(event = "tokenization.key_created", path = %path.display(), "tokenization key created");
            Ok(TokenKey::from_bytes(bytes))
        }
        Err(e) => Err(error(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_edit_keeps_the_policy_in_force_and_a_good_one_replaces_it() {
        let dir = std::env::temp_dir().join(format!("tollgate-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("policy.toml");
        let good = "version = 1\n[[identities]]\nid = \"a\"\nuid = [1]\n[[rules]]\nid = \"r\"\neffect = \"allow\"\nidentities = [\"a\"]\n";
        std::fs::write(&file, good).unwrap();
        let store = PolicyStore::open(&file, &dir).unwrap();
        assert_eq!(store.current().generation, 1);
        assert!(!store.changed_on_disk());

        std::fs::write(
            &file,
            "version = 1\n[[rules]]\nid = \"r\"\neffect = \"maybe\"\n",
        )
        .unwrap();
        let error = store.reload().unwrap_err().to_string();
        assert!(error.contains("policy.toml:2: rule \"r\""), "{error}");
        assert_eq!(
            store.current().generation,
            1,
            "the old policy stays in force"
        );
        assert_eq!(&*store.current().policy.rules[0].id, "r");

        std::fs::write(&file, good.replace("id = \"r\"", "id = \"r2\"")).unwrap();
        assert_eq!(store.reload().unwrap(), 2);
        assert_eq!(&*store.current().policy.rules[0].id, "r2");

        // The key file was created private, and is reused on the next start.
        let key_file = dir.join("tokenization.key");
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = std::fs::read(&key_file).unwrap();
        let again = PolicyStore::open(&file, &dir).unwrap();
        drop(again);
        assert_eq!(std::fs::read(&key_file).unwrap(), key);
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = PolicyStore::open(&file, &dir).err().unwrap().to_string();
        assert!(refused.contains("chmod 600"), "{refused}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
