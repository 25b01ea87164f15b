//! Leaving the agent cgroup: an agent without privilege cannot move itself out (cgroup v2
//! migration needs write access to the common ancestor's `cgroup.procs`, which only root has),
//! and what it runs next is still intercepted.

use crate::common::{assert_success, open_event_for, pg_bed_in, run};

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn agent_cannot_leave_its_cgroup_without_privilege() {
    let bed = pg_bed_in(
        "agent_cannot_leave_its_cgroup_without_privilege",
        None,
        "127.0.0.1",
        "",
        |_, _| {},
    );
    let root_procs = xtask::testbed::cgroup2_root().join("cgroup.procs");
    let port = bed.pg.port();
    // As nobody: try to move to the root cgroup, say whether it worked, then connect.
    let script = format!(
        "if echo $$ > {root}; then echo escaped; else echo stayed; fi; \
         exec psql -X -At -U postgres -d postgres -h 127.0.0.1 -p {port} -c 'select 1'",
        root = root_procs.display()
    );
    let mut command = bed.agents.command("setpriv");
    command.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "sh",
        "-c",
        &script,
    ]);
    let (pid, output) = run(command);
    assert_success(&output, "agent psql after the escape attempt");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("stayed"),
        "the agent left its cgroup: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");
    let open = open_event_for(&bed.gateway, pid);
    assert_eq!(open["cgroup"], bed.agents.path.as_str(), "{open}");
    assert_eq!(open["uid"], 65534, "{open}");
}
