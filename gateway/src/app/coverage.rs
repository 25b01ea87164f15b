//! Listener coverage while the gateway runs: checked before anything is installed (a strict
//! target with an uncovered listener refuses the start), applied after, and re-checked every
//! second, with an alarm when a strict target's server starts listening somewhere new.

use super::AppError;
use crate::{
    config::Config,
    intercept::{
        coverage::{self, host, CoverageView, Plan, Reach},
        Interception,
    },
};

/// How often the host's listeners are read again.
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The plan for the host as it is now; an uncovered listener of a strict target is an error.
pub fn check_at_startup(config: &Config) -> Result<Plan, AppError> {
    let snapshot = host::snapshot().map_err(AppError::Listeners)?;
    let plan = coverage::plan(config, &snapshot);
    if !plan.uncovered.is_empty() {
        return Err(AppError::Uncovered(describe(&plan.uncovered)));
    }
    Ok(plan)
}

/// `target: listener answering on address` for each.
pub fn describe(reaches: &[Reach]) -> String {
    reaches
        .iter()
        .map(|r| {
            if r.listener == r.address {
                format!("target {}: listener {}", r.target, r.listener)
            } else {
                format!(
                    "target {}: listener {} (reachable at {})",
                    r.target, r.listener, r.address
                )
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Puts `plan` in force: the kernel map first, then what the proxy and status see.
pub fn apply(
    interception: &mut Interception,
    view: &CoverageView,
    plan: Plan,
) -> Result<(), AppError> {
    interception
        .programs
        .set_extended(&plan.extended_keys())
        .map_err(|e| AppError::Intercept(e.into()))?;
    view.set(plan);
    Ok(())
}

/// One re-scan: logs what changed and applies it. Errors are logged; the last plan stays.
pub fn rescan(config: &Config, interception: &mut Interception, view: &CoverageView) {
    let snapshot = match host::snapshot() {
        Ok(snapshot) => snapshot,
        Err(error) => {
            tracing::error!(%error, "coverage: cannot read the host's listeners");
            return;
        }
    };
    let plan = coverage::plan(config, &snapshot);
    let before = view.plan();
    for reach in plan
        .extended
        .iter()
        .filter(|r| !before.extended.contains(r))
    {
        tracing::info!(
            event = "coverage.extended",
            target = %reach.target,
            address = %reach.address,
            listener = %reach.listener,
            "protected port also reachable here: intercepted as well"
        );
    }
    for reach in plan
        .uncovered
        .iter()
        .filter(|r| !before.uncovered.contains(r))
    {
        tracing::error!(
            event = "coverage.uncovered",
            target = %reach.target,
            address = %reach.address,
            listener = %reach.listener,
            "ALARM: the server listens where the target does not protect it (coverage = \
             \"strict\"): agents can connect here directly"
        );
    }
    if plan != before {
        if let Err(error) = apply(interception, view, plan) {
            tracing::error!(%error, "coverage: could not update the protected addresses");
        }
    }
}

/// For `check-config`: what the configuration covers on this host right now, and whether
/// `run` would start (no strict target leaves a listener uncovered).
pub fn report(config: &Config) -> std::io::Result<(String, bool)> {
    use std::fmt::Write as _;
    let snapshot = host::snapshot()?;
    let plan = coverage::plan(config, &snapshot);
    let mut out = String::from("listeners on protected ports on this host:\n");
    let mut line = |kind: &str, reach: &Reach| {
        let _ = writeln!(
            out,
            "  {} (listener {}): {kind}, target {}",
            reach.address, reach.listener, reach.target
        );
    };
    for reach in &plan.named {
        line("protected (destination)", reach);
    }
    for reach in &plan.extended {
        line("protected (coverage extends the target here)", reach);
    }
    for reach in &plan.uncovered {
        line(
            "NOT PROTECTED (coverage = \"strict\"): run refuses to start",
            reach,
        );
    }
    if plan.named.is_empty() && plan.extended.is_empty() && plan.uncovered.is_empty() {
        out.push_str("  none listening now (checked again every second while running)\n");
    }
    Ok((out, plan.uncovered.is_empty()))
}
