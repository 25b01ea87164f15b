//! Agents' paths to a protected server's unix socket, decided at startup: served through the
//! gateway (the `connect_unix` redirect, 6.7+), refused (the LSM backstop alone), or, where
//! neither can hold, no start at all.

use super::AppError;
use crate::{
    config::{Config, Coverage, UnixRoute},
    intercept::{unix_connect, Interception},
};

/// Whether agents' connects to protected unix sockets will be served (the gateway binds its
/// own sockets for them before anything is redirected there).
pub fn serving(config: &Config, routes: &[UnixRoute]) -> bool {
    !routes.is_empty() && unix_connect::serves(config)
}

/// After the programs are in place: says what holds, and refuses the start where an agent
/// could reach a protected socket around the gateway (the interception is removed first).
pub fn check(
    config: &Config,
    interception: Interception,
    routes: &[UnixRoute],
    serving: bool,
) -> Result<Interception, AppError> {
    let Some(backstop) = interception.programs.unix_backstop() else {
        return Ok(interception);
    };
    let paths = describe(routes);
    let strict = routes.iter().any(|route| {
        config
            .targets
            .iter()
            .any(|t| t.name == route.target && t.coverage == Coverage::Strict)
    });
    let refusal = match (backstop, serving) {
        (Ok(backstop), true) => {
            tracing::info!(
                event = "unix.protected",
                sockets = %paths,
                names = ?backstop.names(),
                "agents' connects to these sockets go to the gateway; by any other name \
                 (a symlink, a hard link) they are refused"
            );
            return Ok(interception);
        }
        (Ok(backstop), false) => {
            tracing::warn!(
                event = "unix.refused",
                sockets = %paths,
                names = ?backstop.names(),
                reason = %why_not_served(config),
                "agents' connects to these sockets are refused, by any name: agents reach the \
                 server by TCP"
            );
            return Ok(interception);
        }
        (Err(why), true) if !strict => {
            tracing::error!(
                event = "unix.backstop_unavailable",
                sockets = %paths,
                %why,
                "ALARM: agents' connects to these paths go to the gateway, but by another name \
                 (a symlink, a hard link, a relative path) they reach the server directly; \
                 keep agents off the socket with pg_hba.conf, or enable the BPF LSM"
            );
            return Ok(interception);
        }
        (Err(why), true) => AppError::UnixBackstopMissing {
            paths,
            why: why.to_owned(),
        },
        (Err(why), false) => AppError::UnixUnprotected {
            paths,
            why: format!("{}, and {why}", why_not_served(config)),
        },
    };
    if let Err(error) = interception.remove(config) {
        tracing::error!(%error, "could not remove interception state");
    }
    Err(refusal)
}

fn why_not_served(config: &Config) -> String {
    match unix_connect::probe() {
        Err(error) => error.to_string(),
        Ok(()) => format!(
            "gateway.unix_agents = \"{}\"",
            config.gateway.unix_agents.as_str()
        ),
    }
}

fn describe(routes: &[UnixRoute]) -> String {
    routes
        .iter()
        .map(|r| format!("{} (target {})", r.protected.display(), r.target))
        .collect::<Vec<_>>()
        .join(", ")
}
