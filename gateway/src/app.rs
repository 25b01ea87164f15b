//! Wiring for `tollgate run`: startup checks, interception, listeners, admin API, drain and
//! shutdown.

use std::{path::Path, sync::Arc, time::SystemTime};

use tokio::signal::unix::{signal, SignalKind};

use crate::{
    admin,
    config::{self, Config},
    drain,
    intercept::{self, Interception},
    proxy::{listener, ProxyContext, ProxyStats},
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Intercept(#[from] intercept::InterceptError),
    #[error(transparent)]
    Listen(#[from] listener::BindError),
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

pub async fn run(config_path: &Path) -> Result<(), AppError> {
    let config = Arc::new(config::load(config_path)?);
    // Privilege and host checks come first so an unprivileged run fails with that message.
    let host = intercept::preflight::check().map_err(intercept::InterceptError::from)?;
    let admin_listener = admin::bind(&config.gateway.admin_socket)?;
    // Listen before redirecting anything, so agents are never sent to a closed port by us.
    let listeners = listener::bind(&config.gateway.bind, config.gateway.listen_port)?;
    let listen_addrs: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();

    let mut interception = Interception::install(&config, &host)?;
    spawn_bpf_logger(&mut interception);

    let stats = Arc::new(ProxyStats::default());
    let context = Arc::new(ProxyContext {
        config: config.clone(),
        attribution: interception.attribution(),
        stats: stats.clone(),
        proc_root: "/proc".into(),
    });
    let (drain_signal, drain_watch) = drain::channel();
    for listener in listeners {
        tokio::spawn(listener::serve(
            listener,
            context.clone(),
            drain_watch.clone(),
        ));
    }
    let status = status_fn(
        &config,
        config_path,
        &interception,
        listen_addrs.clone(),
        stats,
    );
    tokio::spawn(admin::serve(admin_listener, status, drain_watch.clone()));
    drop(drain_watch);

    tracing::info!(
        event = "gateway.ready",
        listen = ?listen_addrs,
        nft_table = %config.gateway.nft_table,
        generation = %interception.programs.generation_dir().display(),
        attach_points = ?interception.programs.attach_points().iter().map(|p| p.cgroup.as_str()).collect::<Vec<_>>(),
        "tollgate is intercepting agent connections"
    );

    wait_for_shutdown().await?;
    tracing::info!(
        event = "gateway.stopping",
        "clean shutdown: removing interception, draining connections"
    );
    // Stop accepting first (the accept loops end on the signal).
    drain_signal.start();
    // Clean shutdown removes the table: agents connect directly, as without Tollgate.
    if let Err(error) = interception.remove() {
        tracing::error!(%error, "could not remove interception state");
    }
    let _ = std::fs::remove_file(&config.gateway.admin_socket);
    let live = || {
        context
            .stats
            .live
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    if !drain_signal.drain(config.gateway.drain_timeout).await {
        tracing::warn!(
            live = live(),
            "drain timeout: closing the remaining connections"
        );
    }
    Ok(())
}

async fn wait_for_shutdown() -> Result<(), AppError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(AppError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(AppError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(AppError::Signals)?;
    loop {
        tokio::select! {
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
            _ = hangup.recv() => {
                tracing::warn!("SIGHUP: live reload is not supported yet; restart tollgate to apply a changed config");
            }
        }
    }
}

/// Forwards aya-log records from the kernel programs into our log. They are rare (failures
/// only at the default level), so polling the ring buffer is enough.
fn spawn_bpf_logger(interception: &mut Interception) {
    match aya_log::EbpfLogger::init(interception.programs.ebpf_mut()) {
        Ok(mut logger) => {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    logger.flush();
                }
            });
        }
        Err(error) => tracing::warn!(%error, "eBPF log forwarding unavailable"),
    }
}

fn status_fn(
    config: &Config,
    config_path: &Path,
    interception: &Interception,
    listen: Vec<String>,
    stats: Arc<ProxyStats>,
) -> admin::StatusFn {
    let started = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let fixed = serde_json::json!({
        "pid": std::process::id(),
        "version": env!("CARGO_PKG_VERSION"),
        "started_unix": started,
        "config": config_path.display().to_string(),
        "listen": listen,
        "nft_table": config.gateway.nft_table,
        "redirect": config.gateway.redirect.as_str(),
        "bpffs_generation": interception.programs.generation_dir().display().to_string(),
        "attach_points": interception.programs.attach_points(),
        "agents": {
            "cgroups": config.agents.cgroups,
            "uids": config.agents.uids,
            "remote_sources": config.agents.remote_sources.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        },
        "targets": config.targets.iter().map(|t| serde_json::json!({
            "name": t.name,
            "kind": t.kind.as_str(),
            "destinations": t.destinations.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    Arc::new(move || {
        let mut status = fixed.clone();
        status["connections"] = stats.snapshot();
        status
    })
}
