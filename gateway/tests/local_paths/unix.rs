//! The unix socket path: `psql` without `-h` as an agent is pointed at the gateway by the
//! `connect_unix` program and attributed from its peer credentials; a non-agent goes direct.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::common::{
    accepted, assert_success, open_event_for, pg_bed_in, run, stdout, try_pg_bed_in, PgBed,
};

/// A cluster on 127.0.0.1 whose own socket (in its temp dir) is protected explicitly; the
/// default, /var/run/postgresql/.s.PGSQL.PORT, is checked by the configuration tests.
fn unix_bed(test: &str) -> (PgBed, PathBuf) {
    let mut socket = PathBuf::new();
    let bed = pg_bed_in(test, None, "127.0.0.1", "", |config, pg| {
        socket = pg.socket_dir().join(format!(".s.PGSQL.{}", pg.port()));
        config.target_lines.push((
            "clinic".to_owned(),
            format!("unix_sockets = [{:?}]", socket.display().to_string()),
        ));
    });
    (bed, socket)
}

/// `psql` with no `-h`: libpq takes the socket directory from PGHOST and connects by path.
/// The server answers `inet_client_addr()` with NULL for a unix-socket client and with the
/// gateway's address when the gateway connected for it.
fn psql_by_socket(mut command: Command, socket_dir: &Path, port: u16, sql: &str) -> (u32, Output) {
    command
        .env("PGHOST", socket_dir)
        .args(["-X", "-A", "-t", "-U", "postgres", "-d", "postgres"])
        .args(["-p", &port.to_string(), "-c", sql]);
    run(command)
}

const WHO: &str = "select coalesce(host(inet_client_addr()), 'local socket')";

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn psql_without_host_as_agent_is_intercepted_and_attributed() {
    let (bed, socket) = unix_bed("psql_without_host_as_agent_is_intercepted_and_attributed");
    let job = bed.agents.child("job-1").expect("child cgroup");
    let (pid, output) = psql_by_socket(
        job.command("psql"),
        &bed.pg.socket_dir(),
        bed.pg.port(),
        WHO,
    );
    assert_success(&output, "agent psql over the unix socket");
    // The server saw the gateway's TCP connection, not the agent's socket.
    assert_eq!(stdout(&output), "127.0.0.1");
    let open = open_event_for(&bed.gateway, pid);
    assert_eq!(open["orig_dst"], format!("unix:{}", socket.display()));
    assert_eq!(open["client"], "unix");
    assert_eq!(open["target"], "clinic");
    assert_eq!(open["identity"], "process");
    assert_eq!(open["comm"], "psql");
    assert_eq!(open["uid"], 0);
    assert_eq!(open["cgroup"], job.path.as_str());
    assert!(
        open["exe"]
            .as_str()
            .is_some_and(|exe| exe.ends_with("/psql")),
        "{open}"
    );
    let status = bed.gateway.status().expect("status");
    assert_eq!(
        status["unix_sockets"][0]["hook"], "connect_unix",
        "{status}"
    );
    drop(job);
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn psql_without_host_as_non_agent_goes_direct() {
    let (bed, _) = unix_bed("psql_without_host_as_non_agent_goes_direct");
    let (_, output) = psql_by_socket(
        Command::new("psql"),
        &bed.pg.socket_dir(),
        bed.pg.port(),
        WHO,
    );
    assert_success(&output, "non-agent psql over the unix socket");
    assert_eq!(stdout(&output), "local socket");
    assert_eq!(
        accepted(&bed.gateway),
        0,
        "a non-agent must not reach the gateway"
    );
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn non_agent_connecting_to_the_gateway_socket_itself_is_refused() {
    let (bed, _) = unix_bed("non_agent_connecting_to_the_gateway_socket_itself_is_refused");
    let status = bed.gateway.status().expect("status");
    let gateway_socket = status["unix_sockets"][0]["gateway_socket"]
        .as_str()
        .expect("gateway socket in status")
        .to_owned();
    // Straight to the gateway's socket, by a process in no agent cgroup.
    let refused = std::os::unix::net::UnixStream::connect(&gateway_socket).map(|mut stream| {
        use std::io::{Read, Write};
        let _ = stream.write_all(&startup_packet());
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    });
    let answer = refused.expect("the gateway socket accepts, then decides");
    assert!(answer.is_empty(), "a non-agent got an answer: {answer:?}");
    let close = bed
        .gateway
        .wait_for_event(std::time::Duration::from_secs(5), |e| {
            e["event"] == "connection.close" && e["outcome"] == "refused"
        })
        .expect("a refused close record");
    assert_eq!(
        close["reason"], "no attribution: not an agent connection",
        "{close}"
    );
}

/// A PostgreSQL StartupMessage (protocol 3.0) for user postgres.
pub fn startup_packet() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608_u32.to_be_bytes());
    for (key, value) in [("user", "postgres"), ("database", "postgres")] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn unix_socket_fails_closed_when_the_gateway_dies() {
    let (mut bed, _) = unix_bed("unix_socket_fails_closed_when_the_gateway_dies");
    bed.gateway.kill9().expect("kill -9 the gateway");
    // The pinned program still points agents at the gateway's socket, where nobody listens.
    let (_, refused) = psql_by_socket(
        bed.agents.command("psql"),
        &bed.pg.socket_dir(),
        bed.pg.port(),
        WHO,
    );
    assert!(
        !refused.status.success(),
        "an agent must not reach the server's socket while the gateway is down: {}",
        stdout(&refused)
    );
    let (_, direct) = psql_by_socket(
        Command::new("psql"),
        &bed.pg.socket_dir(),
        bed.pg.port(),
        WHO,
    );
    assert_success(&direct, "non-agent while the gateway is down");
    assert_eq!(stdout(&direct), "local socket");
}

/// A link at the server's default socket path (`/var/run/postgresql/.s.PGSQL.PORT`, what libpq
/// uses with no host at all) to the bed's socket, removed on Drop.
struct DefaultSocketLink(PathBuf);

impl DefaultSocketLink {
    fn create(bed: &PgBed) -> Self {
        let dir = Path::new("/var/run/postgresql");
        std::fs::create_dir_all(dir).expect("/var/run/postgresql");
        let link = dir.join(format!(".s.PGSQL.{}", bed.pg.port()));
        let target = bed
            .pg
            .socket_dir()
            .join(format!(".s.PGSQL.{}", bed.pg.port()));
        std::os::unix::fs::symlink(&target, &link).expect("link the default socket path");
        Self(link)
    }
}

impl Drop for DefaultSocketLink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `psql -p PORT` with neither `-h` nor PGHOST: libpq's default socket directory.
fn psql_default(mut command: Command, port: u16) -> (u32, Output) {
    command
        .env_remove("PGHOST")
        .args(["-X", "-A", "-t", "-U", "postgres", "-d", "postgres"])
        .args(["-p", &port.to_string(), "-c", WHO]);
    run(command)
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn default_socket_of_a_local_destination_is_protected_without_configuration() {
    // No unix_sockets line: the target's loopback destination protects the default path.
    let bed = pg_bed_in(
        "default_socket_of_a_local_destination_is_protected_without_configuration",
        None,
        "127.0.0.1",
        "",
        |_, _| {},
    );
    let link = DefaultSocketLink::create(&bed);
    let (pid, output) = psql_default(bed.agents.command("psql"), bed.pg.port());
    assert_success(&output, "agent psql with no host");
    assert_eq!(stdout(&output), "127.0.0.1");
    let open = open_event_for(&bed.gateway, pid);
    assert_eq!(
        open["orig_dst"],
        format!("unix:{}", link.0.display()),
        "{open}"
    );
    let (_, direct) = psql_default(Command::new("psql"), bed.pg.port());
    assert_success(&direct, "non-agent psql with no host");
    assert_eq!(stdout(&direct), "local socket");
}

/// A directory of other names for the bed's socket, each as libpq would look for it
/// (`<dir>/.s.PGSQL.PORT`): a symlink, a hard link. Removed on Drop.
struct OtherNames {
    root: PathBuf,
}

impl OtherNames {
    fn create(bed: &PgBed) -> Self {
        let root = std::env::temp_dir().join(format!("tollgate-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let socket = bed
            .pg
            .socket_dir()
            .join(format!(".s.PGSQL.{}", bed.pg.port()));
        let name = format!(".s.PGSQL.{}", bed.pg.port());
        for dir in ["symlink", "hardlink"] {
            std::fs::create_dir_all(root.join(dir)).expect("names directory");
        }
        std::os::unix::fs::symlink(&socket, root.join("symlink").join(&name)).expect("symlink");
        std::fs::hard_link(&socket, root.join("hardlink").join(&name)).expect("hard link");
        Self { root }
    }

    fn dirs(&self, bed: &PgBed) -> Vec<(&'static str, PathBuf)> {
        let postmaster = bed.pg.postmaster_pid().expect("postmaster pid");
        let through_proc = Path::new("/proc")
            .join(postmaster.to_string())
            .join("root")
            .join(bed.pg.socket_dir().strip_prefix("/").expect("absolute"));
        vec![
            ("a symlink", self.root.join("symlink")),
            ("a hard link", self.root.join("hardlink")),
            ("/proc/PID/root", through_proc),
        ]
    }
}

impl Drop for OtherNames {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Every other name refuses an agent and serves a non-agent; a relative path too.
fn refused_by_every_other_name(bed: &PgBed, names: &OtherNames) {
    for (what, dir) in names.dirs(bed) {
        let (_, refused) = psql_by_socket(bed.agents.command("psql"), &dir, bed.pg.port(), WHO);
        assert!(
            !refused.status.success(),
            "an agent reached the server through {what}: {}",
            stdout(&refused)
        );
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("Operation not permitted"), "{what}: {said}");
        let (_, direct) = psql_by_socket(Command::new("psql"), &dir, bed.pg.port(), WHO);
        assert_success(&direct, &format!("non-agent through {what}"));
        assert_eq!(stdout(&direct), "local socket");
    }
    let mut relative = bed.agents.command("psql");
    relative.current_dir(bed.pg.socket_dir());
    let (_, refused) = psql_by_socket(relative, Path::new("."), bed.pg.port(), WHO);
    assert!(
        !refused.status.success(),
        "an agent reached the server by a relative path: {}",
        stdout(&refused)
    );
}

/// `tollgate status` as an admin reads it.
fn status_text(bed: &PgBed) -> String {
    let output = Command::new(crate::common::TOLLGATE)
        .args(["status", "--config"])
        .arg(bed.gateway.config_path())
        .output()
        .expect("tollgate status");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn agent_reaching_the_socket_by_another_name_is_refused_or_the_admin_is_alarmed() {
    let (bed, socket) =
        unix_bed("agent_reaching_the_socket_by_another_name_is_refused_or_the_admin_is_alarmed");
    let status = bed.gateway.status().expect("status");
    let backstop = &status["unix_backstop"];
    let names = OtherNames::create(&bed);
    match backstop["active"].as_bool() {
        Some(true) => refused_by_every_other_name(&bed, &names),
        // A kernel that does not run the LSM program (this machine's refuses every BPF
        // trampoline program, LSM and fentry alike): the gap is named at startup and in status.
        Some(false) => {
            let why = backstop["why"].as_str().unwrap_or_default();
            assert!(why.contains("LSM"), "status says why: {status}");
            let alarm = bed
                .gateway
                .wait_for_event(std::time::Duration::from_secs(5), |e| {
                    e["event"] == "unix.backstop_unavailable"
                })
                .expect("run raises the alarm at startup");
            assert_eq!(alarm["level"], "ERROR", "{alarm}");
            assert!(
                alarm["sockets"]
                    .as_str()
                    .is_some_and(|s| s.contains(&socket.display().to_string())),
                "the alarm names the socket: {alarm}"
            );
            let text = status_text(&bed);
            assert!(
                text.contains("ALARM: unix sockets by other names"),
                "tollgate status shows the alarm: {text}"
            );
            // The alarm is not crying wolf: a symlink does reach the server directly.
            let (what, dir) = names.dirs(&bed).remove(0);
            let (_, around) = psql_by_socket(bed.agents.command("psql"), &dir, bed.pg.port(), WHO);
            assert_success(&around, &format!("agent through {what}, the gap named"));
            assert_eq!(stdout(&around), "local socket");
        }
        None => panic!("status says whether the unix backstop runs: {status}"),
    }
    // By its own name the agent is served.
    let (_, served) = psql_by_socket(
        bed.agents.command("psql"),
        &bed.pg.socket_dir(),
        bed.pg.port(),
        WHO,
    );
    assert_success(&served, "agent by the protected path");
    assert_eq!(stdout(&served), "127.0.0.1");
}

/// [`unix_bed`] with one more line on target `clinic` and on `[gateway]`, or what tollgate
/// said when it refused to start.
fn unix_bed_with(test: &str, target_line: &str, gateway_line: &str) -> Result<PgBed, String> {
    try_pg_bed_in(test, None, "127.0.0.1", "", |config, pg| {
        let socket = pg.socket_dir().join(format!(".s.PGSQL.{}", pg.port()));
        for line in [
            format!("unix_sockets = [{:?}]", socket.display().to_string()),
            target_line.to_owned(),
        ] {
            config.target_lines.push(("clinic".to_owned(), line));
        }
        config.extra_gateway.push(gateway_line.to_owned());
    })
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn strict_target_needs_its_unix_socket_closed_by_every_name() {
    let test = "strict_target_needs_its_unix_socket_closed_by_every_name";
    match unix_bed_with(test, "coverage = \"strict\"", "") {
        Ok(bed) => {
            let status = bed.gateway.status().expect("status");
            assert_eq!(status["unix_backstop"]["active"], true, "{status}");
            refused_by_every_other_name(&bed, &OtherNames::create(&bed));
        }
        Err(error) => {
            assert!(
                error.contains("coverage = \\\"strict\\\"")
                    || error.contains("coverage = \"strict\""),
                "{error}"
            );
            assert!(
                error.contains("by another name"),
                "the error says what is open: {error}"
            );
            assert!(error.contains("LSM"), "and what would close it: {error}");
        }
    }
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn unix_agents_refuse_turns_every_name_away_or_does_not_start() {
    // What a kernel without connect_unix (before 6.7) gets: the backstop alone.
    let test = "unix_agents_refuse_turns_every_name_away_or_does_not_start";
    let bed = match unix_bed_with(test, "", "unix_agents = \"refuse\"") {
        Ok(bed) => bed,
        Err(error) => {
            // No LSM program on this kernel: nothing could refuse, so no start, saying why.
            assert!(error.contains("must not be reachable by agents"), "{error}");
            assert!(
                error.contains("unix_agents"),
                "the error names the setting: {error}"
            );
            assert!(
                error.contains("BPF LSM"),
                "and what would make it hold: {error}"
            );
            return;
        }
    };
    let status = bed.gateway.status().expect("status");
    assert_eq!(status["unix_agents"], "refused", "{status}");
    assert_eq!(status["unix_sockets"][0]["hook"], "none", "{status}");
    assert!(
        !Path::new(
            status["unix_sockets"][0]["gateway_socket"]
                .as_str()
                .unwrap()
        )
        .exists(),
        "no gateway socket is bound when agents are refused: {status}"
    );
    let refused_start = bed
        .gateway
        .wait_for_event(std::time::Duration::from_secs(5), |e| {
            e["event"] == "unix.refused"
        })
        .expect("run says so at startup");
    assert!(
        refused_start["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unix_agents")),
        "{refused_start}"
    );
    let names = OtherNames::create(&bed);
    let mut dirs = names.dirs(&bed);
    dirs.push(("the protected path", bed.pg.socket_dir()));
    for (what, dir) in dirs {
        let (_, refused) = psql_by_socket(bed.agents.command("psql"), &dir, bed.pg.port(), WHO);
        assert!(
            !refused.status.success(),
            "an agent reached the server through {what}: {}",
            stdout(&refused)
        );
        let (_, direct) = psql_by_socket(Command::new("psql"), &dir, bed.pg.port(), WHO);
        assert_success(&direct, &format!("non-agent through {what}"));
    }
    // TCP stays intercepted.
    let mut tcp = bed.agents.command("psql");
    tcp.args(["-h", "127.0.0.1"]);
    let (_, over_tcp) = psql_by_socket(tcp, &bed.pg.socket_dir(), bed.pg.port(), WHO);
    assert_success(&over_tcp, "agent by TCP");
    assert_eq!(stdout(&over_tcp), "127.0.0.1");
    assert_eq!(
        accepted(&bed.gateway),
        1,
        "only the TCP session reached the gateway"
    );
}
