//! A "remote" host: a network namespace joined to this host by a veth pair, removed on Drop.

use std::{net::Ipv4Addr, process::Command};

use super::run_capture;

pub struct RemoteHost {
    name: String,
    host_if: String,
    /// This host's address on the link.
    pub host_addr: Ipv4Addr,
    /// The remote host's address.
    pub remote_addr: Ipv4Addr,
}

impl RemoteHost {
    pub fn create() -> anyhow::Result<Self> {
        let id = std::process::id() % 200;
        let name = format!("tollgate-remote-{}", std::process::id());
        let host_if = format!("tgh{}", std::process::id() % 100_000);
        let peer_if = format!("tgr{}", std::process::id() % 100_000);
        let host = Self {
            name: name.clone(),
            host_if: host_if.clone(),
            host_addr: Ipv4Addr::new(10, 201, id as u8, 1),
            remote_addr: Ipv4Addr::new(10, 201, id as u8, 2),
        };
        run_capture(Command::new("ip").args(["netns", "add", &name]))?;
        run_capture(Command::new("ip").args([
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ]))?;
        run_capture(Command::new("ip").args(["link", "set", &peer_if, "netns", &name]))?;
        run_capture(Command::new("ip").args([
            "addr",
            "add",
            &format!("{}/24", host.host_addr),
            "dev",
            &host_if,
        ]))?;
        run_capture(Command::new("ip").args(["link", "set", &host_if, "up"]))?;
        // `ip netns exec` remounts /sys and hides the cgroup2 tree; nsenter does not.
        for args in [
            vec![
                "ip",
                "addr",
                "add",
                &format!("{}/24", host.remote_addr),
                "dev",
                &peer_if,
            ],
            vec!["ip", "link", "set", &peer_if, "up"],
            vec!["ip", "link", "set", "lo", "up"],
        ] {
            let mut command = host.command(args[0]);
            command.args(&args[1..]);
            run_capture(&mut command)?;
        }
        Ok(host)
    }

    /// Runs `program` inside the remote host's network namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.name))
            .arg(program);
        command
    }
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
