//! `xtask pg-client`: a real driver (tokio-postgres) exercised as an agent.

pub fn run(port: u16, checks: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("pg-client is not written yet (port {port}, {checks:?})")
}
