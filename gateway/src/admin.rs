//! Admin API on a unix socket (root-only): a client connects and receives the status as JSON.

use std::{
    io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::{io::AsyncWriteExt, net::UnixListener};

use crate::drain;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("another tollgate is already running (its admin socket {0} answers)")]
    AlreadyRunning(PathBuf),
    #[error("admin socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Produces the status document on demand.
pub type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Binds the admin socket, refusing if a live gateway already owns it.
pub fn bind(path: &Path) -> Result<UnixListener, AdminError> {
    let err = |source| AdminError::Io {
        path: path.to_owned(),
        source,
    };
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(AdminError::AlreadyRunning(path.to_owned()));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(err(error)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, status: StatusFn, mut drain: drain::Watch) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = drain.signaled() => return,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let mut body = status().to_string();
        body.push('\n');
        tokio::spawn(async move {
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}

/// Reads the status from a running gateway, if one answers on `path`.
pub fn query(path: &Path) -> Option<serde_json::Value> {
    use std::io::Read;
    let mut stream = std::os::unix::net::UnixStream::connect(path).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    serde_json::from_str(&body).ok()
}
