//! Two gateways side by side, each intercepting its own agents, measured in many short quads
//! (A, B, B, A) per pgbench mode: the machine's load drifts over seconds, and within a quad
//! it weighs on both sides alike. Used where a ratio between two gateways is the figure.

use std::path::Path;

use xtask::testbed::{AgentCgroup, GatewayConfig, GatewayProcess, PgCluster, TempDir};

use super::{
    median,
    pgbench::{pgbench_run, PgbenchRun},
    policy::example_policy_config,
    process_cpu_seconds, quartiles,
};

pub const MODES: [&str; 3] = ["simple", "extended", "prepared"];
pub const CLIENTS: u32 = 10;
/// Seconds per pgbench run of a quad.
pub const QUAD_RUN_SECONDS: u32 = 2;
const QUADS_PER_ROUND: u32 = 4;
const MIN_QUADS: u32 = 8;

/// One side's runs in one mode.
#[derive(Default)]
pub struct Side {
    tps: Vec<f64>,
    transactions: u64,
    gateway_cpu_seconds: f64,
}

impl Side {
    fn add(&mut self, run: &PgbenchRun, gateway_cpu_seconds: f64) {
        self.tps.push(run.tps);
        self.transactions += run.transactions;
        self.gateway_cpu_seconds += gateway_cpu_seconds;
    }

    pub fn median_tps(&mut self) -> f64 {
        median(&mut self.tps)
    }

    pub fn cpu_per_transaction_us(&self) -> f64 {
        self.gateway_cpu_seconds * 1e6 / self.transactions.max(1) as f64
    }
}

/// Per mode: both sides, and the ratio B/A (median over quads, with quartiles).
pub struct ModeResult {
    pub mode: &'static str,
    pub sides: [Side; 2],
    pub ratio: (f64, f64, f64),
}

/// A gateway for one side: its own agents, protecting the cluster on `port`. The second side
/// needs another mark (`config.mark ^= 0x8000`): each gateway recognises its agents by it.
pub fn side_config(tag: &str, agents: &AgentCgroup, port: u16) -> GatewayConfig {
    let mut config = GatewayConfig::new(tag);
    config.cgroups = vec![agents.path.clone()];
    config.targets = vec![("clinic".to_owned(), vec![format!("127.0.0.1:{port}")])];
    // For trying a setting (e.g. `workers = 1`): extra `[gateway]` lines, `;`-separated.
    if let Ok(lines) = std::env::var("XTASK_BENCH_GATEWAY") {
        config
            .extra_gateway
            .extend(lines.split(';').map(str::to_owned));
    }
    config
}

/// A gateway with the example policy for its own agents (`tollgate-bench-<name>`), set up
/// further by `configure` (a second side flips its mark: `config.mark ^= 0x8000`).
pub struct PolicySide {
    // Dropped in this order: the gateway stops before its agents' cgroup is removed.
    pub gateway: GatewayProcess,
    _dir: TempDir,
    pub agents: AgentCgroup,
}

impl PolicySide {
    pub fn start(
        binary: &Path,
        pg_port: u16,
        name: &str,
        configure: impl FnOnce(&mut GatewayConfig),
    ) -> anyhow::Result<Self> {
        let agents = AgentCgroup::create(&format!("tollgate-bench-{name}"))?;
        // A policy file each: it names its own gateway's agents.
        let dir = TempDir::new(&format!("tollgate-bench-{name}"))?;
        let mut config = side_config(&format!("bench{}", name.replace('-', "")), &agents, pg_port);
        example_policy_config(&mut config, &agents, &dir)?;
        configure(&mut config);
        let gateway = GatewayProcess::start(binary, &config)?;
        Ok(Self {
            gateway,
            _dir: dir,
            agents,
        })
    }
}

pub fn number_of_quads(rounds: u32) -> u32 {
    (rounds * QUADS_PER_ROUND).max(MIN_QUADS)
}

pub fn run_quads(
    pg: &PgCluster,
    gateways: [(&AgentCgroup, &GatewayProcess); 2],
    quads: u32,
    clients: u32,
) -> anyhow::Result<Vec<ModeResult>> {
    let mut sides: Vec<[Side; 2]> = MODES.iter().map(|_| Default::default()).collect();
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    for _ in 0..quads {
        for (index, mode) in MODES.iter().enumerate() {
            let mut quad = [0.0; 2];
            for side in [0, 1, 1, 0] {
                let (agents, gateway) = gateways[side];
                let before = process_cpu_seconds(gateway)?;
                let run = pgbench_run(
                    agents.command("pgbench"),
                    pg.port(),
                    mode,
                    clients,
                    QUAD_RUN_SECONDS,
                )?;
                let cpu = process_cpu_seconds(gateway)? - before;
                sides[index][side].add(&run, cpu);
                quad[side] += run.tps;
            }
            ratios[index].push(quad[1] / quad[0]);
        }
    }
    Ok(MODES
        .iter()
        .zip(sides)
        .zip(&mut ratios)
        .map(|((mode, sides), ratios)| ModeResult {
            mode,
            sides,
            ratio: quartiles(ratios),
        })
        .collect())
}
