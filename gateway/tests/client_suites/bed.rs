//! The bed of one client suite: a throwaway cluster the suites can run on (a new one per run),
//! an agent cgroup, and a gateway protecting the cluster, started per through run in one of two
//! modes.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    process::Command,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use xtask::{
    client_suites::{permissive_policy, start_cluster, Suites},
    testbed::{
        require_root, write_catalog_credentials, AgentCgroup, GatewayConfig, GatewayProcess,
        PgCluster, TempDir,
    },
};

const TOLLGATE: &str = env!("CARGO_BIN_EXE_tollgate");

/// The tests share the kernel (cgroup hooks, nat hooks) and the gateway's names: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// How a through run's gateway is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No policy: statements are recorded, nothing is decided.
    Recording,
    /// The permissive policy in force and the catalog read with its own credentials, so every
    /// statement is decided and DDL re-reads the catalog, yet nothing should change.
    Policy,
}

pub const MODES: [Mode; 2] = [Mode::Recording, Mode::Policy];

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Recording => "through (recording only)",
            Self::Policy => "through (permissive policy + catalog)",
        }
    }
}

pub struct SuiteBed {
    pub suites: Suites,
    pub pg: PgCluster,
    pub agents: AgentCgroup,
    pub dir: TempDir,
    _serial: MutexGuard<'static, ()>,
}

impl SuiteBed {
    pub fn start(test: &str) -> Self {
        require_root(test);
        let serial = SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let suites = Suites::open().unwrap_or_else(|error| panic!("{test}: {error:#}"));
        let pg = start_cluster().expect("throwaway PostgreSQL cluster for the suites");
        let agents = AgentCgroup::create(&format!("tollgate-suites-{}", std::process::id()))
            .expect("agent cgroup");
        let dir = TempDir::new("tollgate-suites").expect("temp dir");
        std::fs::write(
            dir.path().join("policy.toml"),
            permissive_policy(&agents.path),
        )
        .expect("write the policy");
        write_catalog_credentials(&dir.path().join("catalog.toml")).expect("catalog credentials");
        Self {
            suites,
            pg,
            agents,
            dir,
            _serial: serial,
        }
    }

    pub fn port(&self) -> u16 {
        self.pg.port()
    }

    /// Replaces the cluster with a new one, so a run starts from the state the previous run
    /// started from: a suite cut short leaves roles, prepared transactions and large objects
    /// behind, which would fail the next run for reasons of its own.
    pub fn fresh_cluster(&mut self) {
        self.pg = start_cluster().expect("throwaway PostgreSQL cluster for the suites");
    }

    /// Starts the gateway protecting the cluster (target `clinic`) for the bed's agents.
    pub fn gateway(&self, mode: Mode) -> GatewayProcess {
        let mut config = GatewayConfig::new("suites");
        config.cgroups = vec![self.agents.path.clone()];
        config.targets = vec![(
            "clinic".to_owned(),
            vec![
                format!("127.0.0.1:{}", self.port()),
                format!("[::1]:{}", self.port()),
            ],
        )];
        if mode == Mode::Policy {
            config.enforce_policy(
                "clinic",
                &self.dir.path().join("policy.toml"),
                &self.dir.path().join("catalog.toml"),
            );
        }
        GatewayProcess::start(Path::new(TOLLGATE), &config).expect("tollgate starts")
    }

    /// Starts programs as agents in the bed's cgroup.
    pub fn agent(&self) -> impl Fn(&str) -> Command + '_ {
        |program| self.agents.command(program)
    }

    /// A fresh directory the `postgres` user may write (the server writes files there too).
    pub fn postgres_dir(&self, name: &str) -> TempDir {
        let dir = TempDir::new(&format!("tollgate-suites-{name}")).expect("temp dir");
        dir.chown_to("postgres").expect("chown to postgres");
        dir
    }
}

/// What the gateway saw of the agents' connections.
#[derive(Default)]
pub struct AgentConnections {
    pub opened: usize,
    /// Close outcome -> count.
    pub outcomes: BTreeMap<String, usize>,
    /// The errors of connections that did not close cleanly -> count.
    pub errors: BTreeMap<String, usize>,
}

/// A through run that opened no agent connection did not go through Tollgate at all. Close
/// records are written in the background after the client saw the end, so this waits
/// (bounded) until every connection has one.
pub fn agent_connections(gateway: &GatewayProcess, cgroup: &str) -> AgentConnections {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = connections_now(gateway, cgroup);
        if seen.outcomes.values().sum::<usize>() == seen.opened || Instant::now() >= deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn connections_now(gateway: &GatewayProcess, cgroup: &str) -> AgentConnections {
    let events = gateway.events();
    let ids: HashSet<u64> = events
        .iter()
        .filter(|e| e["event"] == "connection.open" && e["cgroup"] == cgroup)
        .filter_map(|e| e["conn_id"].as_u64())
        .collect();
    let mut seen = AgentConnections {
        opened: ids.len(),
        ..AgentConnections::default()
    };
    for close in events.iter().filter(|e| {
        e["event"] == "connection.close" && e["conn_id"].as_u64().is_some_and(|i| ids.contains(&i))
    }) {
        let outcome = close["outcome"].as_str().unwrap_or("?").to_owned();
        if outcome != "closed" && outcome != "cancel_forwarded" {
            let error = close["error"].as_str().unwrap_or("(no error recorded)");
            *seen
                .errors
                .entry(format!("{outcome}: {error}"))
                .or_insert(0) += 1;
        }
        *seen.outcomes.entry(outcome).or_insert(0) += 1;
    }
    seen
}
