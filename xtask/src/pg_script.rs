//! `xtask pg-script`: sends a PostgreSQL message script and prints the backend messages.

pub fn run(port: u16, script: &std::path::Path) -> anyhow::Result<()> {
    anyhow::bail!("pg-script is not written yet (port {port}, {})", script.display())
}
