//! `tollgate status`: what the kernel holds (pins, links, nft table, map entries) and what a
//! running gateway reports over its admin socket.

use std::{path::Path, process::ExitCode};

use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use gateway_common::{stats, ConnIdentity, FlowKey};
use serde_json::{json, Value};

use crate::{
    admin,
    config::{self, validate},
    intercept::{bpffs, nft},
};

/// Exit code when no gateway answers.
const NOT_RUNNING: u8 = 3;

pub fn run(config_path: &Path, as_json: bool) -> ExitCode {
    // The admin socket, nft and the pinned maps are root-only: without root everything would
    // look absent, which reads like "not running".
    // /proc/self belongs to the effective uid.
    let euid =
        std::fs::metadata("/proc/self").map(|meta| std::os::unix::fs::MetadataExt::uid(&meta));
    if euid.is_ok_and(|uid| uid != 0) {
        eprintln!("tollgate: error: status needs root (the admin socket, nftables and the pinned maps are root-only); run `sudo tollgate status`");
        return ExitCode::from(2);
    }
    // Without a readable config, inspect the defaults.
    let (socket, table, bpffs_dir) = match config::load(config_path) {
        Ok(config) => (
            config.gateway.admin_socket,
            config.gateway.nft_table,
            config.gateway.bpffs_dir,
        ),
        Err(error) => {
            if config_path.exists() {
                eprintln!("tollgate: warning: {error}; showing the default locations");
            }
            (
                validate::DEFAULT_ADMIN_SOCKET.into(),
                validate::DEFAULT_NFT_TABLE.to_owned(),
                validate::DEFAULT_BPFFS_DIR.into(),
            )
        }
    };
    let gateway = admin::query(&socket);
    let kernel = kernel_state(&table, &bpffs_dir);
    let report = json!({ "gateway": gateway, "kernel": kernel });
    if as_json {
        println!("{report}");
    } else {
        print_text(&report);
    }
    if report["gateway"].is_null() {
        ExitCode::from(NOT_RUNNING)
    } else {
        ExitCode::SUCCESS
    }
}

fn kernel_state(table: &str, bpffs_dir: &Path) -> Value {
    let generations = bpffs::generations(bpffs_dir);
    let current = generations.last();
    let mut state = json!({
        "nft_table": { "name": format!("inet {table}"), "present": nft::exists(table) },
        "bpffs_dir": bpffs_dir.display().to_string(),
        "generations": generations.iter().map(|g| g.display().to_string()).collect::<Vec<_>>(),
    });
    if let Some(generation) = current {
        let pins: Vec<String> = std::fs::read_dir(generation)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        state["links"] = json!(pins
            .iter()
            .filter(|p| p.starts_with("link_"))
            .collect::<Vec<_>>());
        state["programs"] = json!(pins
            .iter()
            .filter_map(|pin| pin.strip_prefix("prog_"))
            .map(|name| program_stats(name, &generation.join(format!("prog_{name}"))))
            .collect::<Vec<_>>());
        state["map_entries"] = json!({
            "flows": count_entries::<FlowKey, ConnIdentity>(&generation.join("map_FLOWS")),
            "connects": count_entries::<u64, ConnIdentity>(&generation.join("map_CONNECTS")),
        });
        state["counters"] = counters(&generation.join("map_STATS"));
    }
    state
}

/// Kernel statistics of a pinned program. Run counts and times only accumulate while
/// `sysctl kernel.bpf_stats_enabled=1` (it costs a little per run, so it is off by default).
fn program_stats(name: &str, pin: &Path) -> Value {
    match aya::programs::ProgramInfo::from_pin(pin) {
        Ok(info) => json!({
            "name": name,
            "id": info.id(),
            "run_count": info.run_count(),
            "run_time_ns": u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
        }),
        Err(_) => json!({ "name": name }),
    }
}

fn open_pinned(path: &Path) -> Option<Map> {
    MapData::from_pin(path)
        .ok()
        .and_then(|data| Map::from_map_data(data).ok())
}

fn count_entries<K: aya::Pod, V: aya::Pod>(path: &Path) -> Option<usize> {
    let map: HashMap<MapData, K, V> = HashMap::try_from(open_pinned(path)?).ok()?;
    Some(map.keys().filter(Result::is_ok).count())
}

fn counters(path: &Path) -> Value {
    let Some(map) = open_pinned(path) else {
        return Value::Null;
    };
    let Ok(array) = PerCpuArray::<MapData, u64>::try_from(map) else {
        return Value::Null;
    };
    let total = |index: u32| {
        array
            .get(&index, 0)
            .map(|values| values.iter().sum::<u64>())
            .ok()
    };
    json!({
        "marked_connects": total(stats::MARKED),
        "mark_failures": total(stats::MARK_FAILED),
        "flows_tracked": total(stats::FLOWS_TRACKED),
        "flows_closed": total(stats::FLOWS_CLOSED),
        "unix_refused": total(stats::UNIX_REFUSED),
    })
}

fn print_text(report: &Value) {
    let gateway = &report["gateway"];
    let kernel = &report["kernel"];
    if gateway.is_null() {
        println!("gateway: not running");
    } else {
        println!(
            "gateway: running (pid {}, version {})",
            gateway["pid"],
            gateway["version"].as_str().unwrap_or("?")
        );
        println!("  listening on: {}", join(&gateway["listen"]));
        println!(
            "  local redirect: {}",
            gateway["redirect"].as_str().unwrap_or("?")
        );
        let untracked = &gateway["untracked"];
        println!(
            "  exempt from connection tracking: {} flows (untrack = {})",
            untracked["scope"].as_str().unwrap_or("?"),
            untracked["configured"].as_str().unwrap_or("?")
        );
        for user in untracked["kept_for"].as_array().into_iter().flatten() {
            println!("    kept tracked for: {}", user.as_str().unwrap_or("?"));
        }
        println!("  live connections: {}", gateway["connections"]["live"]);
        println!(
            "  accepted: {}, refused: {}",
            gateway["connections"]["accepted"], gateway["connections"]["refused"]
        );
        for point in gateway["attach_points"].as_array().into_iter().flatten() {
            println!(
                "  attached at cgroup {} (id {}): {}",
                point["cgroup"].as_str().unwrap_or("?"),
                point["cgroup_id"],
                join(&point["programs"])
            );
        }
        for target in gateway["targets"].as_array().into_iter().flatten() {
            println!(
                "  target {} ({}): {}; coverage {}",
                target["name"].as_str().unwrap_or("?"),
                target["kind"].as_str().unwrap_or("?"),
                join(&target["destinations"]),
                target["coverage"].as_str().unwrap_or("?")
            );
        }
        for socket in gateway["unix_sockets"].as_array().into_iter().flatten() {
            println!(
                "  unix socket {} (target {}): hook {}",
                socket["path"].as_str().unwrap_or("?"),
                socket["target"].as_str().unwrap_or("?"),
                socket["hook"].as_str().unwrap_or("?")
            );
        }
        let backstop = &gateway["unix_backstop"];
        match backstop["active"].as_bool() {
            Some(true) => println!(
                "  unix sockets by other names: refused to agents ({})",
                join(&backstop["names"])
            ),
            Some(false) => println!(
                "  ALARM: unix sockets by other names (a symlink, a hard link) reach the server \
                 directly: {}",
                backstop["why"].as_str().unwrap_or("?")
            ),
            None => {}
        }
        print_audit(&gateway["audit"]);
        let coverage = &gateway["coverage"];
        for (kind, label) in [
            ("named", "protected (destination)"),
            ("extended", "protected (coverage)"),
            ("uncovered", "ALARM: NOT PROTECTED"),
        ] {
            for reach in coverage[kind].as_array().into_iter().flatten() {
                println!(
                    "  {label}: {} (listener {}, target {})",
                    reach["address"].as_str().unwrap_or("?"),
                    reach["listener"].as_str().unwrap_or("?"),
                    reach["target"].as_str().unwrap_or("?")
                );
            }
        }
    }
    let present = kernel["nft_table"]["present"].as_bool().unwrap_or(false);
    println!(
        "nftables table {}: {}",
        kernel["nft_table"]["name"].as_str().unwrap_or("?"),
        if present { "present" } else { "absent" }
    );
    println!(
        "pinned links: {}",
        kernel["links"].as_array().map_or(0, Vec::len)
    );
    println!(
        "map entries: flows {}, connects {}",
        kernel["map_entries"]["flows"], kernel["map_entries"]["connects"]
    );
    if gateway.is_null() && present {
        println!("note: interception is installed but no gateway answers: agent connections to protected destinations are refused (fail closed) until tollgate runs again");
    }
}

/// The evidence log and each SIEM sink's lag behind it.
fn print_audit(audit: &Value) {
    if audit.is_null() {
        return;
    }
    println!(
        "  audit log: {} records ({} signed, {} synced, {}) in {}",
        audit["records"],
        audit["signed"],
        audit["synced"],
        audit["durability"].as_str().unwrap_or("?"),
        audit["dir"].as_str().unwrap_or("?")
    );
    if let Some(failure) = audit["failure"].as_str() {
        println!("  ALARM: the audit log cannot be written, requests are refused: {failure}");
    }
    for sink in audit["exports"].as_array().into_iter().flatten() {
        println!(
            "  export {} ({} to {}): {} records delivered, lag {}{}",
            sink["name"].as_str().unwrap_or("?"),
            sink["kind"].as_str().unwrap_or("?"),
            sink["destination"].as_str().unwrap_or("?"),
            sink["delivered"],
            sink["lag"],
            sink["error"]
                .as_str()
                .map(|e| format!("; failing: {e}"))
                .unwrap_or_default()
        );
    }
}

fn join(list: &Value) -> String {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
