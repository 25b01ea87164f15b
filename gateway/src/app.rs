//! Wiring for `tollgate run`: startup checks, interception, listeners, admin API, drain and
//! shutdown.

mod coverage;
mod unix_paths;

use std::{path::Path, sync::Arc, time::SystemTime};

use tokio::signal::unix::{signal, SignalKind};

use crate::{
    admin,
    config::{self, Config},
    config::{TargetAuth, TargetKind, UpstreamTlsMode},
    drain,
    identity::token::{JwksError, TokenValidator},
    intercept::{self, Interception},
    policy::{derived::DerivedStore, PolicyStore},
    postgres::{
        agent_acceptor, load_credentials, CancelRegistry, CatalogAccess, CertificateSource,
        CredentialsError, Enforcement, PostgresSettings, RecordingHooks, TlsError, TokenLogin,
        UpstreamConnector,
    },
    proxy::{listener, unix, workers, ProxyContext, ProxyStats},
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
    ListenUnix(#[from] unix::UnixBindError),
    #[error(
        "{paths} must not be reachable by agents around the gateway, but {why}. Serving agents \
         there needs the cgroup connect_unix hook (Linux 6.7+); refusing them needs the BPF LSM \
         (`bpf` in the kernel's `lsm=` boot parameter). With neither, nothing can refuse an \
         agent's connect to a unix socket on this kernel, so tollgate does not start. Enable the \
         BPF LSM or run a newer kernel, or set `unix_sockets = []` on the target and keep agents \
         off the socket with pg_hba.conf (`local` lines only for the roles that need them)"
    )]
    UnixUnprotected { paths: String, why: String },
    #[error(
        "{paths}: agents' connects by these paths go to the gateway, but by another name (a \
         symlink, a hard link) they would reach the server directly: {why}. The target has \
         coverage = \"strict\", so tollgate does not start. Enable the BPF LSM (`bpf` in the \
         kernel's `lsm=` boot parameter), or drop `coverage = \"strict\"` to start with an alarm"
    )]
    UnixBackstopMissing { paths: String, why: String },
    #[error("reading the host's listening sockets: {0}")]
    Listeners(std::io::Error),
    #[error(
        "a protected server listens where its target does not protect it, and the target has \
         coverage = \"strict\": {0}. Add the address to the target's destinations, make the \
         server listen only there, or drop `coverage = \"strict\"` to have tollgate protect it"
    )]
    Uncovered(String),
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Jwks(#[from] JwksError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Policy(#[from] crate::policy::StoreError),
    #[error(transparent)]
    Derived(#[from] crate::policy::derived::DerivedStoreError),
    #[error("{0}")]
    PolicyTargets(String),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("starting the worker threads: {0}")]
    Workers(std::io::Error),
    #[error("approvals.webhook_url {url}: {detail}")]
    Webhook { url: String, detail: String },
    #[error("approvals.http_listen {listen}: {source}")]
    ApprovalsHttp {
        listen: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(
        "another tollgate already manages {bpffs_dir} (lock {lock} is held); a second instance \
         would unpin the first one's programs"
    )]
    AlreadyRunning { bpffs_dir: String, lock: String },
    #[error("instance lock {path}: {source}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The approvers' HTTPS API and page, with the certificate agents are shown.
async fn start_approvals_http(
    config: &Config,
    http: &config::HttpApprovals,
    context: &ProxyContext,
    drain: &drain::Watch,
) -> Result<(), AppError> {
    let Some(approvals) = &context.postgres.approvals else {
        tracing::warn!(
            event = "approvals.http_off",
            "approvals.http_listen is set, but without a policy nothing is ever held: not served"
        );
        return Ok(());
    };
    let tokens = TokenValidator::new("approvals", &http.tokens, config.gateway.bypass_mark)?;
    let tls = crate::postgres::https_acceptor(&config.gateway.tls)?;
    let listener = admin::http::bind(http)
        .await
        .map_err(|source| AppError::ApprovalsHttp {
            listen: http.listen,
            source,
        })?;
    let api = admin::http::HttpApi {
        approvals: approvals.clone(),
        tokens,
        approver_groups: http.approver_groups.clone(),
        drain: drain.clone(),
    };
    tracing::info!(event = "approvals.http_ready", listen = %http.listen, "approvers' page and API served");
    tokio::spawn(admin::http::serve(listener, tls, api));
    Ok(())
}

/// The signals that stop the gateway or reload its policy.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

/// Registered before anything answers on the admin socket: a SIGTERM that arrives as soon as
/// `status` does (a quick restart) is then a clean stop, not the default kill.
fn signals() -> Result<Signals, AppError> {
    let register = |kind| signal(kind).map_err(AppError::Signals);
    Ok(Signals {
        terminate: register(SignalKind::terminate())?,
        interrupt: register(SignalKind::interrupt())?,
        hangup: register(SignalKind::hangup())?,
    })
}

pub async fn run(config_path: &Path, keep_on_exit: bool) -> Result<(), AppError> {
    let config = Arc::new(config::load(config_path)?);
    let signals = signals()?;
    // Privilege and host checks come first so an unprivileged run fails with that message.
    let host = intercept::preflight::check().map_err(intercept::InterceptError::from)?;
    let _instance = instance_lock(&config)?;
    // Evidence first: nothing is served that the log could not record.
    let audit = crate::audit::AuditLog::open(&config.audit)?;
    audit.append(crate::audit::Event::GatewayStarted {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config_file: config_path.display().to_string(),
        policy_file: config
            .gateway
            .policy_file
            .as_ref()
            .map(|p| p.display().to_string()),
    })?;
    let exporters = Arc::new(crate::audit::export::Exporters::start(
        &config.audit.exports,
        &audit,
        config.gateway.bypass_mark,
    ));
    let admin_listener = admin::bind(&config.gateway.admin_socket)?;
    warn_if_listen_port_unprivileged(config.gateway.listen_port);
    raise_open_file_limit();
    // Listen before redirecting anything, so agents are never sent to a closed port by us.
    let worker_count = config.gateway.workers;
    let listener_groups = listener::bind(
        &config.gateway.bind,
        config.gateway.listen_port,
        config.gateway.mark,
        worker_count,
    )?;
    let listen_addrs: Vec<String> = listener_groups
        .first()
        .into_iter()
        .flatten()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let unix_routes = config.unix_routes();
    let serving_unix = unix_paths::serving(&config, &unix_routes);
    let coverage_plan = coverage::check_at_startup(&config)?;
    let unix_listeners = match serving_unix {
        true => unix::bind(&unix_routes)?,
        false => Vec::new(),
    };

    let interception = Interception::install(&config, &host)?;
    let mut interception = unix_paths::check(&config, interception, &unix_routes, serving_unix)?;
    spawn_bpf_logger(&mut interception);
    let coverage_view = Arc::new(intercept::coverage::CoverageView::default());
    coverage::apply(&mut interception, &coverage_view, coverage_plan)?;

    let stats = Arc::new(ProxyStats::default());
    let context = Arc::new(ProxyContext {
        config: config.clone(),
        attribution: interception.attribution(),
        stats: stats.clone(),
        proc_root: "/proc".into(),
        postgres: postgres_settings(&config, &audit)?,
        coverage: coverage_view.clone(),
        audit: audit.clone(),
    });
    let (drain_signal, drain_watch) = drain::channel();
    let workers =
        workers::start(listener_groups, &context, &drain_watch).map_err(AppError::Workers)?;
    let cgroup2_root: Arc<Path> = Arc::from(host.cgroup2_root.as_path());
    for (route, listener) in unix_listeners {
        match tokio::net::UnixListener::from_std(listener) {
            Ok(listener) => {
                tokio::spawn(unix::serve(
                    listener,
                    route,
                    context.clone(),
                    cgroup2_root.clone(),
                    drain_watch.clone(),
                ));
            }
            Err(error) => tracing::error!(%error, "unix listener not usable"),
        }
    }
    let status = status_fn(
        &config,
        config_path,
        &interception,
        listen_addrs.clone(),
        stats,
        coverage_view.clone(),
        Evidence {
            log: audit.clone(),
            exporters: exporters.clone(),
        },
    );
    if let (Some(approvals), Some(url)) = (&context.postgres.approvals, &config.approvals.webhook) {
        let client = crate::net::http::client::HttpClient::new(url, config.gateway.bypass_mark)
            .map_err(|detail| AppError::Webhook {
                url: url.text.clone(),
                detail,
            })?;
        tokio::spawn(crate::approval::webhook::run(approvals.clone(), client));
    }
    if let Some(http) = &config.approvals.http {
        start_approvals_http(&config, http, &context, &drain_watch).await?;
    }
    let admin_api = admin::AdminApi {
        status,
        approvals: context.postgres.approvals.clone(),
        approval_settings: config.approvals.clone(),
    };
    tokio::spawn(admin::serve(admin_listener, admin_api, drain_watch.clone()));
    drop(drain_watch);

    if !interception.untracked.kept_for.is_empty() {
        tracing::warn!(
            event = "nft.untrack_loopback_only",
            kept_for = ?interception.untracked.kept_for,
            "other rules on this host rely on connection tracking: only loopback flows of \
             protected ports are exempted from it (set gateway.untrack = \"non-agent\" if those \
             rules never see non-agent flows)"
        );
    }
    tracing::info!(
        event = "gateway.ready",
        listen = ?listen_addrs,
        nft_table = %config.gateway.nft_table,
        generation = %interception.programs.generation_dir().display(),
        attach_points = ?config.agents.cgroups,
        redirect = config.gateway.redirect.as_str(),
        untracked = interception.untracked.scope.as_str(),
        unix_sockets = ?unix_routes.iter().map(|r| r.protected.display().to_string()).collect::<Vec<_>>(),
        "tollgate is intercepting agent connections"
    );

    let enforcement = context.postgres.enforcement.clone();
    serve_until_shutdown(
        signals,
        &config,
        &mut interception,
        &host.cgroup2_root,
        enforcement.as_deref(),
        &coverage_view,
        &audit,
    )
    .await?;
    tracing::info!(
        event = "gateway.stopping",
        "clean shutdown: removing interception, draining connections"
    );
    // Requests waiting for approval fail first, rather than hold the drain up: their clients
    // are told while everything still runs. Then accepting stops (the accept loops end on the
    // signal), and anything that started waiting in between is failed too.
    let abandon = || {
        if let Some(approvals) = &context.postgres.approvals {
            approvals.abandon_all("the gateway is stopping");
        }
    };
    abandon();
    drain_signal.start();
    abandon();
    let draining = if keep_on_exit {
        // The pins keep the programs attached and the table stays: agents are refused until
        // the next start replaces both.
        drop(interception);
        tracing::warn!(
            event = "gateway.interception_kept",
            "interception left in place: agent connections are refused until tollgate runs again \
             (`tollgate uninstall` removes it)"
        );
        None
    } else {
        // Clean shutdown: new agent connections go direct, as without Tollgate; those already
        // redirected keep their translation while they drain.
        match interception.release(&config) {
            Ok(draining) => Some(draining),
            Err(error) => {
                tracing::error!(%error, "could not remove interception state");
                None
            }
        }
    };
    let _ = std::fs::remove_file(&config.gateway.admin_socket);
    unix::remove(&unix_routes);
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
    workers.stop().await;
    if let Some(Err(error)) = draining.map(intercept::Draining::finish) {
        tracing::error!(%error, "could not remove the nftables table");
    }
    audit.record_anyway(crate::audit::Event::GatewayStopped {
        reason: "clean shutdown".to_owned(),
    });
    audit.close();
    // What they have not delivered (the last records among it) goes at the next start.
    if let Ok(exporters) = Arc::try_unwrap(exporters) {
        exporters.stop();
    }
    Ok(())
}

/// `check-config`: listener coverage on this host, and whether `run` would accept it.
pub fn coverage_report(config: &Config) -> std::io::Result<(String, bool)> {
    coverage::report(config)
}

/// `tollgate uninstall`: removes a stopped gateway's table and pins.
pub fn uninstall(config_path: &Path) -> Result<String, AppError> {
    let config = config::load(config_path)?;
    intercept::preflight::check().map_err(intercept::InterceptError::from)?;
    let _instance = instance_lock(&config)?;
    if admin::query(&config.gateway.admin_socket).is_some() {
        return Err(admin::AdminError::AlreadyRunning(config.gateway.admin_socket.clone()).into());
    }
    let removed = intercept::remove_leftovers(&config)?;
    Ok(removed)
}

/// One gateway per bpffs directory: startup removes every other generation pinned there.
fn instance_lock(config: &Config) -> Result<std::fs::File, AppError> {
    let bpffs_dir = config.gateway.bpffs_dir.display().to_string();
    let name = format!(
        "{}.lock",
        bpffs_dir.trim_start_matches('/').replace('/', "_")
    );
    let path = Path::new(LOCK_DIR).join(name);
    let lock_error = |source| AppError::Lock {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(LOCK_DIR).map_err(lock_error)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AppError::AlreadyRunning {
            bpffs_dir,
            lock: path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(lock_error(source)),
    }
}

const LOCK_DIR: &str = "/run/tollgate";

/// While the gateway is down the rules keep sending agents to this port: any user who can bind
/// it then would receive their connections.
fn warn_if_listen_port_unprivileged(port: u16) {
    let first_unprivileged =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|text| text.trim().parse::<u16>().ok())
            .unwrap_or(1024);
    if port >= first_unprivileged {
        tracing::warn!(
            listen_port = port,
            first_unprivileged,
            "gateway.listen_port can be bound by unprivileged users; while tollgate is down they \
             could receive agent connections. Use a port below {first_unprivileged}."
        );
    }
}

/// How often the policy file is checked for edits.
const POLICY_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Puts an edited policy in force if it validates; otherwise the old one stays, and the log
/// says why.
fn reload_policy(store: &PolicyStore, cause: &str, audit: &crate::audit::AuditLog) {
    let result = store.reload();
    audit.record_anyway(crate::audit::Event::PolicyReloaded {
        file: store.path().display().to_string(),
        applied: result.is_ok(),
        detail: result.as_ref().err().map(|e| e.to_string()),
    });
    match result {
        Ok(generation) => tracing::info!(
            event = "policy.reloaded",
            path = %store.path().display(),
            generation,
            cause,
            "policy reloaded; live sessions use it from their next statement"
        ),
        Err(error) => tracing::error!(
            event = "policy.rejected",
            %error,
            cause,
            "policy not reloaded: the previous policy stays in force"
        ),
    }
}

/// Runs until SIGTERM or SIGINT, following agent cgroups that are re-created meanwhile.
async fn serve_until_shutdown(
    signals: Signals,
    config: &Config,
    interception: &mut Interception,
    cgroup2_root: &Path,
    enforcement: Option<&Enforcement>,
    coverage_view: &intercept::coverage::CoverageView,
    audit: &crate::audit::AuditLog,
) -> Result<(), AppError> {
    let policy = enforcement.map(|e| &*e.store);
    let Signals {
        mut terminate,
        mut interrupt,
        mut hangup,
    } = signals;
    let mut follow = tokio::time::interval(CGROUP_FOLLOW_INTERVAL);
    let mut policy_watch = tokio::time::interval(POLICY_WATCH_INTERVAL);
    let mut listeners_watch = tokio::time::interval(coverage::INTERVAL);
    loop {
        tokio::select! {
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
            _ = hangup.recv() => {
                match policy {
                    Some(store) => reload_policy(store, "SIGHUP", audit),
                    None => tracing::warn!("SIGHUP: no policy_file to reload; restart tollgate to apply a changed configuration"),
                }
            }
            _ = policy_watch.tick(), if policy.is_some() => {
                if let Some(store) = policy.filter(|store| store.changed_on_disk()) {
                    reload_policy(store, "file changed", audit);
                }
                if let Some(enforcement) = enforcement {
                    reload_derived(&enforcement.derived);
                }
            }
            _ = listeners_watch.tick() => {
                coverage::rescan(config, interception, coverage_view);
                interception.programs.refresh_unix_backstop();
            }
            _ = follow.tick() => match interception.programs.follow_recreated_cgroups(cgroup2_root) {
                Ok(changes) => for change in changes {
                    tracing::warn!(
                        event = "agent_cgroup.recreated",
                        cgroup = %change.cgroup,
                        old_id = change.old_id,
                        new_id = change.new_id,
                        "agent cgroup was re-created; programs attached to the new one"
                    );
                },
                Err(error) => tracing::error!(%error, "could not attach to a re-created agent cgroup"),
            },
        }
    }
}

/// An admin's `tollgate classified forget` changed the derived classification file.
fn reload_derived(derived: &DerivedStore) {
    match derived.reload_if_changed() {
        Ok(true) => tracing::info!(
            event = "classified.reloaded",
            path = %derived.path().display(),
            "derived classification changed on disk: in force from each session's next statement"
        ),
        Ok(false) => {}
        Err(error) => tracing::error!(
            event = "classified.reload_failed",
            %error,
            "derived classification file unreadable: the one in memory stays in force"
        ),
    }
}

/// How often agent cgroups are checked for re-creation (a systemd service restart).
const CGROUP_FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

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

/// The audit log and its SIEM exports, as status shows them.
struct Evidence {
    log: crate::audit::Audit,
    exporters: Arc<crate::audit::export::Exporters>,
}

impl Evidence {
    fn status(&self) -> serde_json::Value {
        let mut status = self.log.status();
        status["exports"] = self.exporters.status(self.log.records());
        status
    }
}

fn status_fn(
    config: &Config,
    config_path: &Path,
    interception: &Interception,
    listen: Vec<String>,
    stats: Arc<ProxyStats>,
    coverage: Arc<intercept::coverage::CoverageView>,
    evidence: Evidence,
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
        "untracked": {
            "configured": config.gateway.untrack.as_str(),
            "scope": interception.untracked.scope.as_str(),
            "kept_for": interception.untracked.kept_for,
        },
        "bpffs_generation": interception.programs.generation_dir().display().to_string(),
        "agents": {
            "cgroups": config.agents.cgroups,
            "uids": config.agents.uids,
            "remote_sources": config.agents.remote_sources.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        },
        "targets": config.targets.iter().map(|t| serde_json::json!({
            "name": t.name,
            "kind": t.kind.as_str(),
            "destinations": t.destinations.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "coverage": t.coverage.as_str(),
        })).collect::<Vec<_>>(),
        "unix_sockets": config.unix_routes().iter().map(|r| serde_json::json!({
            "target": r.target,
            "path": r.protected.display().to_string(),
            "gateway_socket": r.gateway.display().to_string(),
            "hook": if interception.programs.unix_hook_attached() { "connect_unix" } else { "none" },
        })).collect::<Vec<_>>(),
        "unix_agents": match interception.programs.unix_hook_attached() {
            true => "served",
            false => "refused",
        },
        "unix_backstop": match interception.programs.unix_backstop() {
            None => serde_json::Value::Null,
            Some(Ok(backstop)) => serde_json::json!({"active": true, "names": backstop.names()}),
            Some(Err(why)) => serde_json::json!({"active": false, "why": why}),
        },
    });
    let attach_points = interception.programs.attach_points();
    Arc::new(move || {
        let mut status = fixed.clone();
        status["connections"] = stats.snapshot();
        status["coverage"] = serde_json::json!(coverage.plan());
        status["audit"] = evidence.status();
        if let Ok(points) = attach_points.lock() {
            status["attach_points"] = serde_json::json!(*points);
        }
        status
    })
}

/// Message-level PostgreSQL settings; this stage's hooks record statements and allow all.
/// Fails if a TLS, JWKS or credentials file named in the configuration cannot be used.
pub fn postgres_settings(
    config: &Config,
    audit: &crate::audit::Audit,
) -> Result<PostgresSettings, AppError> {
    let hooks = Arc::new(RecordingHooks);
    let (agent_tls, certificate) = agent_acceptor(&config.gateway.tls)?;
    match certificate {
        CertificateSource::Configured(path) => {
            tracing::info!(cert_file = %path.display(), "TLS for agents: configured certificate")
        }
        CertificateSource::Appliance {
            cert_file,
            generated,
        } => tracing::info!(
            cert_file = %cert_file.display(),
            generated,
            "TLS for agents: appliance certificate (self-signed; set gateway.tls_cert_file to use your own)"
        ),
    }
    let upstreams = config
        .targets
        .iter()
        .filter(|target| target.kind == TargetKind::Postgres)
        .map(|target| {
            UpstreamConnector::new(&target.name, &target.upstream_tls)
                .map(|connector| (target.name.clone(), connector))
        })
        .collect::<Result<_, _>>()?;
    let mut tokens = std::collections::HashMap::new();
    for target in &config.targets {
        if let TargetAuth::Token(token) = &target.auth {
            let login = TokenLogin {
                validator: TokenValidator::new(
                    &format!("targets[{}]", target.name),
                    &token.validation,
                    config.gateway.bypass_mark,
                )?,
                credentials: load_credentials(&target.name, &token.credentials_file)?,
                password_methods_allowed: target.upstream_tls.mode == UpstreamTlsMode::VerifyFull,
            };
            tokens.insert(target.name.clone(), Arc::new(login));
        }
    }
    let enforcement = match &config.gateway.policy_file {
        Some(path) => Some(Arc::new(enforcement(config, path)?)),
        None => {
            tracing::warn!(
                event = "policy.none",
                "no gateway.policy_file: statements are recorded but not checked or masked"
            );
            None
        }
    };
    Ok(PostgresSettings {
        startup_timeout: config.gateway.startup_timeout,
        max_message_bytes: config.gateway.max_message_bytes,
        upstream_connect_timeout: config.gateway.upstream_connect_timeout,
        bypass_mark: config.gateway.bypass_mark,
        cancels: Arc::new(CancelRegistry::default()),
        request_hook: hooks.clone(),
        response_hook: hooks,
        agent_tls,
        upstreams,
        tokens,
        // Only a policy's rules send requests for approval.
        approvals: match &enforcement {
            Some(_) => Some(crate::approval::Approvals::open(
                config.approvals.required,
                audit.clone(),
                &config.gateway.tls.state_dir.join("approvals"),
            )?),
            None => None,
        },
        approval_timeout: config.approvals.timeout,
        enforcement,
        audit: audit.clone(),
    })
}

/// The policy store and how each target's catalog is read.
fn enforcement(config: &Config, path: &Path) -> Result<Enforcement, AppError> {
    let store = PolicyStore::open(path, &config.gateway.tls.state_dir)?;
    check_policy_targets(config, &store.current().policy)?;
    let mut access = std::collections::HashMap::new();
    for target in &config.targets {
        let Some(file) = &target.catalog_credentials_file else {
            continue;
        };
        let credentials = load_credentials(&target.name, file)?;
        let connector = UpstreamConnector::new(&target.name, &target.upstream_tls)?;
        access.insert(
            target.name.clone(),
            CatalogAccess {
                target: target.name.clone(),
                credentials,
                connector,
                bypass_mark: config.gateway.bypass_mark,
                connect_timeout: config.gateway.upstream_connect_timeout,
            },
        );
    }
    tracing::info!(
        event = "policy.loaded",
        path = %path.display(),
        rules = store.current().policy.rules.len(),
        "policy in force"
    );
    let derived = DerivedStore::open(&config.gateway.tls.state_dir)?;
    Ok(Enforcement::new(Arc::new(store), access, Arc::new(derived)))
}

/// Target names in a policy must be targets of this configuration: a typo would silently
/// leave a rule or a classification unused.
fn check_policy_targets(config: &Config, policy: &crate::policy::Policy) -> Result<(), AppError> {
    let known = |name: &String| config.targets.iter().any(|t| &t.name == name);
    let named = policy
        .rules
        .iter()
        .flat_map(|r| {
            r.targets
                .iter()
                .flatten()
                .map(move |t| (format!("rule {:?}", r.id), t))
        })
        .chain(policy.classified.iter().flat_map(|c| {
            c.targets
                .iter()
                .flatten()
                .map(move |t| (format!("classify {}.{}", c.schema, c.table), t))
        }));
    for (item, target) in named {
        if !known(target) {
            return Err(AppError::PolicyTargets(format!(
                "{}: {item}: target {target:?} is not a target of this configuration",
                policy.source.display()
            )));
        }
    }
    Ok(())
}

/// Every session holds two sockets; a soft limit of 1024 (systemd's default) would refuse
/// agents long before memory runs out, so the soft limit is raised to the hard one.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(open_files = limit, "open file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open file limit"),
    }
}
