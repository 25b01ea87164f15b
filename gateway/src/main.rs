//! `tollgate`: the gateway daemon and its command line.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use tollgate::{app, audit, classified, config, logging, policy, status};

use clap::{Parser, Subcommand, ValueEnum};

const DEFAULT_CONFIG: &str = "/etc/tollgate/tollgate.toml";

/// Tollgate: a data-path guardrail for AI agents.
///
/// The kernel recognises connections that agent processes (selected by cgroup v2, uid or remote
/// source network) make to protected databases and object stores, and nftables redirects them to
/// this gateway, which attributes each one to the process that opened it. Agents keep their
/// hostnames and ports; if the gateway dies, agents are refused, never let through.
#[derive(Parser)]
#[command(name = "tollgate", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: attach the eBPF programs, install the `inet tollgate` nftables table and
    /// serve redirected agent connections until SIGTERM or Ctrl-C (which remove both again).
    ///
    /// Agents' connects to a protected server's unix socket (`targets[].unix_sockets`) go to the
    /// gateway's own socket (by any other name, or with `gateway.unix_agents = "refuse"`, they
    /// are refused), and a local destination's port is protected on every local address the
    /// server listens on (`targets[].coverage`, re-checked every second).
    ///
    /// Needs root (CAP_BPF/CAP_SYS_ADMIN and CAP_NET_ADMIN), cgroup v2 and kernel BTF. While a
    /// target protects a unix socket: on a kernel without the cgroup connect_unix hook (before
    /// Linux 6.7) agents are refused there, which needs the BPF LSM (`lsm=...,bpf`); with
    /// neither, run refuses to start, saying why. It also refuses to start while a
    /// `coverage = "strict"` target's server listens where its destinations do not say, or its
    /// unix socket is reachable by other names (no BPF LSM).
    Run {
        /// Configuration file (TOML; see policies/README.md).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Log format on stdout.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// On SIGTERM/Ctrl-C leave the programs and nftables rules in place, so agents are
        /// refused (not let through) until tollgate runs again: use this for service restarts
        /// and upgrades. `tollgate uninstall` removes them. Without it, a clean stop removes
        /// interception and agents connect directly.
        #[arg(long)]
        keep_on_exit: bool,
    },
    /// Remove what a stopped gateway left in the kernel (its nftables table and pinned
    /// programs): agents then connect directly. Refuses while a gateway is running.
    Uninstall {
        /// Configuration naming the nft table and bpffs directory.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a configuration file or a policy file and print what it says; errors name the
    /// line and field (and, in a policy, the rule). A configuration's `gateway.policy_file` is
    /// checked too when it exists, and the protected unix sockets and the host's listeners on
    /// protected ports are shown: which the destinations name, which coverage extends the
    /// target to, and which a `coverage = "strict"` target leaves uncovered (an error).
    CheckConfig {
        /// Configuration or policy file to check (a policy is recognised by its `version` key).
        file: PathBuf,
    },
    /// Show what a policy decides for a statement and how each output column would be masked.
    ///
    /// Uses the policy and the SQL parser only: the running gateway also resolves `*` and views
    /// through the database catalog and the column origins the server reports, which can only
    /// mask more, never less. Example:
    ///
    ///   tollgate explain --policy policy.toml --target clinic-db
    ///     --identity cgroup=/ai-agents.slice/claude,exe=/usr/bin/psql "SELECT ssn FROM patients"
    Explain {
        /// Policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Target name the statement is sent to (as in the configuration's [[targets]]).
        #[arg(long)]
        target: String,
        /// Who sends it: comma-separated key=value pairs with keys uid, exe, comm, cgroup,
        /// subject, group (repeatable) and remote.
        #[arg(long)]
        identity: String,
        /// The SQL text (several statements allowed).
        sql: String,
    },
    /// Classified columns: declared by the policy, and derived from them. When an agent's
    /// statement stores values computed from classified columns into another table (INSERT
    /// ... SELECT, UPDATE ... FROM, MERGE, CREATE TABLE AS, SELECT INTO), the columns written
    /// become classified too, so reading them back is masked like the originals. Derived
    /// columns of persistent tables are kept in `state_dir/classified.json`; a temporary
    /// table's last as long as its session.
    Classified {
        #[command(subcommand)]
        action: ClassifiedAction,
    },
    /// The audit log: every connection, login and request, recorded before it is served, in
    /// append-only segment files under `audit.dir` (default `state_dir/audit`). An RFC 6962
    /// Merkle tree runs over the records and checkpoints signed with Ed25519 (C2SP signed
    /// notes) cover it every second and every 1,000 records. Keep the verifier key (`audit
    /// public-key`) and checkpoints (`audit checkpoint`) somewhere the host's root cannot
    /// reach; with them, `audit verify` proves the log was neither edited nor cut short.
    /// `[[audit.export]]` sinks in the configuration send every record to a SIEM as OCSF
    /// (files, syslog over TLS, Splunk HEC), each event with its leaf index and covering
    /// checkpoint; `tollgate status` shows each sink's lag.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Sessions as the audit log recorded them: who connected (the process, or the token's
    /// subject), to which target, what they ran, what was decided, and how it ended.
    Sessions {
        #[command(subcommand)]
        action: SessionsAction,
    },
    /// Requests waiting for a person's approval, and the decisions on them.
    ///
    /// A policy rule with `effect = "require_approval"` holds a statement on the agent's open
    /// connection: nothing of it reaches the database, and the agent is told the approval id
    /// in a notice. An approver (a user named in `[approvals] approver_users`, or a member of
    /// a group in `approver_groups`) approves or denies it here; the gateway checks the
    /// caller's uid on its admin socket. The agent's own uid or token subject can never
    /// approve its request, and `required = 2` needs two approvers. A request not decided
    /// within `[approvals] timeout_s` fails with SQLSTATE 57014; a denied one with 42501 and
    /// the approver's reason. Every request, decision, timeout, withdrawal and grant use is
    /// in the audit log.
    ///
    /// Approvers elsewhere use the web page at `https://HOST:PORT/` (`[approvals]
    /// http_listen`), signed in with an OIDC access token whose groups claim names one of
    /// `approver_token_groups`; see the README's "Approving".
    Approvals {
        #[command(subcommand)]
        action: ApprovalsAction,
    },
    /// Show what is installed in the kernel (programs, cgroups, nft table, map entries) and, if a
    /// gateway is running, its listeners and live connection count. Exits 3 when no gateway runs.
    Status {
        /// Configuration whose admin socket, nft table and bpffs directory to inspect.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ClassifiedAction {
    /// List declared and derived classified columns: for each derived one, the relations it
    /// was filled from, the statement, the agent's identity and when.
    List {
        /// Configuration naming the policy file and `state_dir`.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stop treating derived columns as classified: TABLE (every schema), SCHEMA.TABLE or
    /// SCHEMA.TABLE.COLUMN. Use it once the data was removed or verified clean; running
    /// gateways apply it within a second. Declared columns are changed in the policy instead.
    ///
    /// With --settings instead: stop masking the settings sessions inherit on a target where
    /// code Tollgate cannot read (DO, CALL, user functions) ran for an agent that can read
    /// classified data. Such code may have copied a classified value into `ALTER ROLE`,
    /// `ALTER DATABASE` or `ALTER SYSTEM` settings; check them (psql `\drds`,
    /// `pg_file_settings`) before you forget.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["spec", "settings"])))]
    Forget {
        /// What to forget, e.g. `public.ssn_copy` or `public.ssn_copy.ssn`.
        spec: Option<String>,
        /// Forget the mark on inherited settings instead of a derived column.
        #[arg(long)]
        settings: bool,
        /// Configuration naming `state_dir`.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Only this target's derived columns (default: every target's).
        #[arg(long)]
        target: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Recompute the whole log: exits 0 when intact, 1 naming the first bad record (modified,
    /// inserted, deleted, reordered, cut short, signed by another key, or rolled back to a
    /// state older than a checkpoint kept elsewhere).
    Verify {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// A checkpoint printed earlier by `audit checkpoint`: the log must have grown from it.
        #[arg(long, value_name = "FILE")]
        since_checkpoint: Option<PathBuf>,
        /// The verifier key (text or a file holding it) to check signatures with; default:
        /// the log's own signing key.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        /// Check a proof printed by `audit prove` instead of the log (needs only the key).
        #[arg(long, value_name = "FILE", conflicts_with = "since_checkpoint")]
        proof: Option<PathBuf>,
    },
    /// Print the latest signed checkpoint (C2SP tlog-checkpoint as a signed note), to keep
    /// elsewhere or hand to a witness.
    Checkpoint {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print the verifier key (C2SP note format: NAME+KEYID+BASE64).
    PublicKey {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print an RFC 9162 proof against the latest checkpoint, as JSON: that record INDEX is in
    /// the log, or that the log grew from its first OLD_SIZE records by appending only.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["inclusion", "consistency"])))]
    Prove {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long, value_name = "INDEX")]
        inclusion: Option<u64>,
        #[arg(long, value_name = "OLD_SIZE")]
        consistency: Option<u64>,
    },
}

#[derive(Subcommand)]
enum ApprovalsAction {
    /// The requests waiting: id, target, time left, who asks, the rule, and the statement
    /// with its literals redacted.
    List {
        /// The running gateway's configuration (its admin socket is used).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One request in full: the process (pid, exe, command line, cgroup, uid), the token's
    /// subject and groups, the target, database and user, the statement (literals redacted),
    /// tables, classified columns with their masks, the planner's row estimate, and the
    /// request's hash.
    Show {
        /// The approval id (from the agent's notice or `approvals list`).
        id: u64,
        /// The running gateway's configuration (its admin socket is used).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Approve a request: it reaches the database at once and the session goes on.
    Approve {
        /// The approval id (from the agent's notice or `approvals list`).
        id: u64,
        /// The running gateway's configuration (its admin socket is used).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Also let the same identity run the same statement shape (literals aside) on the
        /// same target without asking, for this long: 15m, 2h, 7d (at most 7d).
        #[arg(long = "for", value_name = "DURATION")]
        grant_for: Option<String>,
        /// Approve only if the request is still the one `show` printed (its request hash).
        #[arg(long)]
        hash: Option<String>,
    },
    /// Deny a request: the agent gets ERROR 42501 with your reason, and nothing runs.
    Deny {
        /// The approval id (from the agent's notice or `approvals list`).
        id: u64,
        /// The running gateway's configuration (its admin socket is used).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Shown to the agent and recorded.
        #[arg(long)]
        reason: String,
    },
    /// The grants in force (`approve --for`): who, which statement shape, until when, uses.
    Grants {
        /// The running gateway's configuration (its admin socket is used).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// End a grant now.
    Revoke {
        /// The grant id (from `approvals grants`).
        grant: u64,
        /// The running gateway's configuration (its admin socket is used).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum SessionsAction {
    /// One line per session: id, when, target, who, database user, statements, refusals and
    /// how it ended.
    List {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Opened at or after this: an RFC 3339 UTC time (2026-12-03T07:00:00Z) or an age
        /// (90s, 15m, 2h, 7d).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Only sessions of this identity: uid=N, pid=N, exe=PATH, comm=NAME, cgroup=PREFIX,
        /// subject=SUB, or text found in the executable, thread name, cgroup or subject.
        #[arg(long, value_name = "ID")]
        identity: Option<String>,
        /// Only sessions to this target.
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One session's timeline: the process (exe, command line, cgroup, parent), the login,
    /// each statement with its decision and rule, and the close (outcome, bytes, duration).
    Show {
        /// The session's id (from `sessions list`).
        id: u64,
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            log_format,
            keep_on_exit,
        } => {
            // Flushes the log writer when `run` returns.
            let _log_writer = init_logging(log_format);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => return fail(&format!("cannot start the runtime: {error}")),
            };
            match runtime.block_on(app::run(&config, keep_on_exit)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error.to_string()),
            }
        }
        Command::CheckConfig { file } => check_config(&file),
        Command::Explain {
            policy,
            target,
            identity,
            sql,
        } => {
            let identity = match policy::parse_identity_spec(&identity) {
                Ok(identity) => identity,
                Err(error) => return fail(&error),
            };
            match policy::load(&policy) {
                Ok(policy) => {
                    print!("{}", policy::explain(&policy, &target, &identity, &sql));
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error.to_string()),
            }
        }
        Command::Status { config, json } => status::run(&config, json),
        Command::Audit { action } => audit_command(action),
        Command::Sessions { action } => sessions_command(action),
        Command::Approvals { action } => approvals_command(action),
        Command::Classified { action } => {
            let done = match action {
                ClassifiedAction::List { config, json } => classified::list(&config, json),
                ClassifiedAction::Forget {
                    settings: true,
                    config,
                    target,
                    ..
                } => classified::forget_settings(&config, target.as_deref()),
                ClassifiedAction::Forget {
                    spec: Some(spec),
                    config,
                    target,
                    ..
                } => classified::forget(&config, &spec, target.as_deref()),
                ClassifiedAction::Forget { spec: None, .. } => {
                    Err("name a TABLE[.COLUMN] to forget, or --settings".to_owned())
                }
            };
            match done {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            }
        }
        Command::Uninstall { config } => match app::uninstall(&config) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error.to_string()),
        },
    }
}

fn audit_command(action: AuditAction) -> ExitCode {
    let settings = |path: &PathBuf| {
        config::load(path)
            .map(|c| c.audit)
            .map_err(|e| e.to_string())
    };
    let done = match action {
        AuditAction::Verify {
            config,
            since_checkpoint,
            key,
            proof,
        } => settings(&config).and_then(|s| match proof {
            Some(proof) => audit::commands::check_proof(&s, &proof, key.as_deref()),
            None => audit::commands::verify(&s, since_checkpoint.as_deref(), key.as_deref()),
        }),
        AuditAction::Checkpoint { config } => {
            settings(&config).and_then(|s| audit::commands::checkpoint(&s))
        }
        AuditAction::PublicKey { config } => {
            settings(&config).and_then(|s| audit::commands::public_key(&s))
        }
        AuditAction::Prove {
            config,
            inclusion,
            consistency,
        } => settings(&config).and_then(|s| {
            let asked = match (inclusion, consistency) {
                (Some(index), _) => audit::prove::Asked::Inclusion(index),
                (None, Some(size)) => audit::prove::Asked::Consistency(size),
                (None, None) => return Err("--inclusion or --consistency".to_owned()),
            };
            audit::commands::prove(&s, asked)
        }),
    };
    match done {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tollgate: audit: {error}");
            ExitCode::from(1)
        }
    }
}

fn approvals_command(action: ApprovalsAction) -> ExitCode {
    use tollgate::admin::client::{run, ApprovalCommand as C};
    let (config, command, json) = match action {
        ApprovalsAction::List { config, json } => (config, C::List, json),
        ApprovalsAction::Show { id, config, json } => (config, C::Show(id), json),
        ApprovalsAction::Approve {
            id,
            config,
            reason,
            grant_for,
            hash,
        } => {
            let command = C::Approve {
                id,
                reason,
                grant_for,
                hash,
            };
            (config, command, false)
        }
        ApprovalsAction::Deny { id, config, reason } => (config, C::Deny { id, reason }, false),
        ApprovalsAction::Grants { config, json } => (config, C::Grants, json),
        ApprovalsAction::Revoke { grant, config } => (config, C::Revoke(grant), false),
    };
    match run(&config, command, json) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

fn sessions_command(action: SessionsAction) -> ExitCode {
    use audit::sessions;
    let dir = |path: &PathBuf| {
        config::load(path)
            .map(|c| c.audit.dir)
            .map_err(|e| e.to_string())
    };
    let done = match action {
        SessionsAction::List {
            config,
            since,
            identity,
            target,
            json,
        } => dir(&config).and_then(|dir| {
            let now_ms = audit::record::now_ms();
            let since_ms = since
                .map(|t| sessions::Filter::since(&t, now_ms))
                .transpose()?;
            let filter = sessions::Filter {
                since_ms,
                identity,
                target,
            };
            sessions::list(&dir, &filter, json)
        }),
        SessionsAction::Show { id, config, json } => {
            dir(&config).and_then(|dir| sessions::show(&dir, id, json))
        }
    };
    match done {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let is_policy = std::fs::read_to_string(file)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .is_some_and(|table| table.contains_key("version"));
    if is_policy {
        return match policy::load(file) {
            Ok(policy) => {
                print!("{}", policy::summary(&policy));
                println!("{}: OK", file.display());
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error.to_string()),
        };
    }
    match config::load(file) {
        Ok(config) => {
            print!("{}", config::describe(&config));
            match app::coverage_report(&config) {
                Ok((report, true)) => print!("{report}"),
                Ok((report, false)) => {
                    print!("{report}");
                    return fail("a strict target leaves a listener uncovered (see above)");
                }
                Err(error) => println!("listeners on this host: cannot be read ({error})"),
            }
            if let Some(policy_file) = config.gateway.policy_file.as_deref() {
                if policy_file.exists() {
                    if let Err(error) = policy::load(policy_file) {
                        return fail(&error.to_string());
                    }
                    println!("policy {}: OK", policy_file.display());
                } else {
                    println!(
                        "policy {}: not found here (checked when the gateway starts)",
                        policy_file.display()
                    );
                }
            }
            println!("{}: OK", file.display());
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("tollgate: error: {message}");
    ExitCode::from(2)
}

/// Records are written in batches by a background thread (see `logging.rs`).
fn init_logging(format: LogFormat) -> logging::FlushGuard {
    let (writer, guard) = logging::batch_writer(std::io::stdout());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(writer)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}
