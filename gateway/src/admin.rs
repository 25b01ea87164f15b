//! Admin API on a unix socket. A caller sends one request (a line of JSON naming an `op`)
//! and gets one JSON answer. Who calls is read from the socket (`SO_PEERCRED`, which the
//! caller cannot forge), and each operation checks it: the status is root's (or the gateway
//! user's); approvals are for the users `[approvals]` names. The socket itself is open to
//! every local user for that reason. Remote approvers use the HTTPS API and web page in
//! [`http`], which share the approval operations ([`approvals`]) with this socket.

mod approvals;
pub mod client;
pub mod http;

use std::{
    io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use crate::{approval::Approvals, config::ApprovalSettings, drain};

/// A request line longer than this is refused.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// How long a caller has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a command waits for the gateway's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

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

/// What the admin socket answers for.
pub struct AdminApi {
    pub status: StatusFn,
    /// Requests waiting for approval (None without a policy).
    pub approvals: Option<Arc<Approvals>>,
    pub approval_settings: ApprovalSettings,
}

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
    // Every operation checks its caller's uid; approvers need not be root.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(err)?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, api: AdminApi, mut drain: drain::Watch) {
    let api = Arc::new(api);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = drain.signaled() => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        tokio::spawn(answer(stream, api.clone()));
    }
}

async fn answer(stream: UnixStream, api: Arc<AdminApi>) {
    let Ok(caller) = stream.peer_cred().map(|c| c.uid()) else {
        return;
    };
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES));
    let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    let reply = match read {
        Ok(Ok(_)) => match serde_json::from_str::<Value>(&line) {
            Ok(request) => dispatch(&api, caller, &request),
            Err(error) => refusal(format!("the request is not JSON: {error}")),
        },
        _ => refusal("no request arrived".to_owned()),
    };
    let mut body = reply.to_string();
    body.push('\n');
    let _ = write.write_all(body.as_bytes()).await;
}

fn dispatch(api: &AdminApi, caller: u32, request: &Value) -> Value {
    match request["op"].as_str() {
        Some("status") if caller == 0 || caller == current_euid() => (api.status)(),
        Some("status") => refusal(format!(
            "uid {caller} may not read the gateway's status: run it as root"
        )),
        Some(op) if op.starts_with("approvals.") || op.starts_with("grants.") => {
            approvals::dispatch(api, caller, op, request)
        }
        _ => refusal(format!("unknown request {}", request["op"])),
    }
}

pub(crate) fn refusal(error: String) -> Value {
    json!({ "ok": false, "error": error })
}

fn current_euid() -> u32 {
    // SAFETY: geteuid(2) has no failure mode and touches no memory.
    #[expect(unsafe_code, reason = "geteuid(2) has no std wrapper")]
    unsafe {
        libc::geteuid()
    }
}

/// Sends one request to a running gateway and returns its answer; Err says why none came.
pub fn call(path: &Path, request: &Value) -> Result<Value, String> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(|error| {
        format!(
            "no gateway answers on {} ({error}): is `tollgate run` running with this --config?",
            path.display()
        )
    })?;
    let failed = |error: io::Error| format!("admin socket {}: {error}", path.display());
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(failed)?;
    let mut line = request.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(failed)?;
    let mut body = String::new();
    stream.read_to_string(&mut body).map_err(failed)?;
    serde_json::from_str(&body)
        .map_err(|error| format!("the gateway's answer is not JSON: {error}"))
}

/// Reads the status from a running gateway, if one answers on `path`.
pub fn query(path: &Path) -> Option<serde_json::Value> {
    call(path, &json!({ "op": "status" }))
        .ok()
        .filter(|answer| answer["ok"] != json!(false))
}
