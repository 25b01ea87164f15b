//! Policies for the test bed: the shipped example with the bed's agents in it, and the
//! credentials file of the gateway's catalog connection.

use std::{os::unix::fs::PermissionsExt, path::Path};

use anyhow::{ensure, Context};

/// The example policy as shipped, with `agents_glob` as the cgroup of `coding-agents` and the
/// tokenization key at `key_file`.
pub fn example_policy(agents_glob: &str, key_file: &Path) -> anyhow::Result<String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/clinic-policy.toml");
    example_policy_from(&path, agents_glob, key_file)
}

/// [`example_policy`] from another copy of the example (an earlier build's).
pub fn example_policy_from(
    path: &Path,
    agents_glob: &str,
    key_file: &Path,
) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let agents = r#"cgroup = ["/ai-agents.slice/*", "/ai-agents.slice"]"#;
    let key = r#"key_file = "/var/lib/tollgate/tokenization.key""#;
    ensure!(
        text.contains(agents) && text.contains(key),
        "{} changed: update the test bed's substitutions",
        path.display()
    );
    Ok(text
        .replace(agents, &format!("cgroup = [{agents_glob:?}]"))
        .replace(
            key,
            &format!("key_file = {:?}", key_file.display().to_string()),
        ))
}

/// The example policy's identities, classification and masking with none of its guardrails:
/// the agents may run anything (create, write, `DO`, unparsed statements). What an admin may
/// reasonably write; masking must hold under it as under the example.
pub fn permissive_example_policy(agents_glob: &str, key_file: &Path) -> anyhow::Result<String> {
    let example = example_policy(agents_glob, key_file)?;
    let Some((before_rules, _)) = example.split_once("[[rules]]") else {
        anyhow::bail!("the example policy has no rules to replace");
    };
    Ok(format!(
        r#"{before_rules}[[rules]]
id = "agents-run-everything"
effect = "allow"
identities = ["coding-agents"]

[[rules]]
id = "agents-run-unparsed"
effect = "allow"
identities = ["coding-agents"]
unparsed = true
"#
    ))
}

/// A catalog credentials file (mode 0600) for a trust-auth test cluster.
pub fn write_catalog_credentials(path: &Path) -> anyhow::Result<()> {
    std::fs::write(
        path,
        "user = \"postgres\"\npassword = \"unused-with-trust\"\n",
    )?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}
