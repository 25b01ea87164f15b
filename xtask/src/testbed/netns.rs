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
    /// A second address of the remote side: another host on the same link (an application
    /// server, say) when the first is the only remote agent source.
    pub other_addr: Ipv4Addr,
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
            other_addr: Ipv4Addr::new(10, 201, id as u8, 3),
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
            vec![
                "ip",
                "addr",
                "add",
                &format!("{}/24", host.other_addr),
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
        nsenter(&self.name, program)
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

/// A network namespace of its own with loopback and a veth pair whose both ends stay inside:
/// a host with several local addresses of each family, for listener-coverage tests. Nothing
/// in it is reachable from this host's own namespace. Removed (with its links) on Drop.
pub struct IsolatedNet {
    name: String,
    /// First end of the veth pair.
    pub a_v4: Ipv4Addr,
    pub a_v6: std::net::Ipv6Addr,
    /// Second end: "a second address of the veth pair".
    pub b_v4: Ipv4Addr,
    pub b_v6: std::net::Ipv6Addr,
}

impl IsolatedNet {
    pub fn create() -> anyhow::Result<Self> {
        let id = (std::process::id() % 200) as u8;
        let net = Self {
            name: format!("tollgate-iso-{}", std::process::id()),
            a_v4: Ipv4Addr::new(10, 202, id, 1),
            a_v6: format!("fd00:7467:{id}::1").parse()?,
            b_v4: Ipv4Addr::new(10, 202, id, 2),
            b_v6: format!("fd00:7467:{id}::2").parse()?,
        };
        run_capture(Command::new("ip").args(["netns", "add", &net.name]))?;
        let steps: Vec<Vec<String>> = vec![
            vec!["ip", "link", "set", "lo", "up"],
            vec![
                "ip", "link", "add", "tga", "type", "veth", "peer", "name", "tgb",
            ],
        ]
        .into_iter()
        .map(|s| s.into_iter().map(str::to_owned).collect())
        .chain(
            [("tga", net.a_v4, net.a_v6), ("tgb", net.b_v4, net.b_v6)]
                .into_iter()
                .flat_map(|(link, v4, v6)| {
                    [
                        format!("ip addr add {v4}/24 dev {link}"),
                        // nodad: usable at once, not after duplicate address detection.
                        format!("ip -6 addr add {v6}/64 dev {link} nodad"),
                        format!("ip link set {link} up"),
                    ]
                    .map(|line| line.split(' ').map(str::to_owned).collect())
                }),
        )
        .collect();
        for step in steps {
            let mut command = net.command(&step[0]);
            command.args(&step[1..]);
            run_capture(&mut command)?;
        }
        Ok(net)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        nsenter(&self.name, program)
    }
}

impl Drop for IsolatedNet {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair and every nft table in it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// `program` in network namespace `name` (`ip netns exec` would remount /sys and hide the
/// cgroup2 tree; nsenter does not, and it execs the program, so its pid is the child's).
fn nsenter(name: &str, program: &str) -> Command {
    let mut command = Command::new("nsenter");
    command.arg(format!("--net=/run/netns/{name}")).arg(program);
    command
}

/// Connection tracking entries of TCP flows to `port` (`family`: "ipv4" or "ipv6"), only those
/// from `source` when given, as `conntrack -L` lists them (Debian's `conntrack`).
pub fn conntrack_entries(
    family: &str,
    port: u16,
    source: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let mut command = Command::new("conntrack");
    let port = port.to_string();
    command.args(["-L", "-f", family, "-p", "tcp", "--dport", &port]);
    if let Some(source) = source {
        command.args(["--src", source]);
    }
    let listed = run_capture(&mut command)
        .map_err(|error| error.context("conntrack -L (`cargo xtask setup` installs conntrack)"))?;
    Ok(listed
        .lines()
        .filter(|line| line.starts_with("tcp"))
        .map(str::to_owned)
        .collect())
}
