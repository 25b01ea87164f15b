//! Which policy identities a session belongs to: its process attribution and token claims
//! against each identity's match keys.

use std::{net::IpAddr, path::PathBuf};

use ipnet::IpNet;

use super::glob::{any_matches, Glob};

/// What is known about who is behind a session, as policy matches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityFacts {
    pub uid: Option<u32>,
    pub exe: Option<PathBuf>,
    pub comm: Option<String>,
    /// cgroup v2 path as in `/proc/<pid>/cgroup`, e.g. `/agents/claude`.
    pub cgroup: Option<String>,
    pub token_subject: Option<String>,
    pub token_groups: Vec<String>,
    /// Source address of a remote agent (no process is known).
    pub remote: Option<IpAddr>,
}

/// One `[[identities]]` entry, validated.
#[derive(Debug, Clone)]
pub struct IdentityMatcher {
    pub id: String,
    pub cgroup: Option<Vec<Glob>>,
    pub uid: Option<Vec<u32>>,
    pub exe: Option<Vec<Glob>>,
    pub comm: Option<Vec<Glob>>,
    pub token_subject: Option<Vec<Glob>>,
    pub token_group: Option<Vec<Glob>>,
    pub remote: Option<Vec<IpNet>>,
}

impl IdentityMatcher {
    /// Every key given must match; a key whose fact is unknown does not match.
    pub fn matches(&self, facts: &IdentityFacts) -> bool {
        fn key<T, F: FnOnce(&T) -> bool>(condition: &Option<T>, test: F) -> bool {
            condition.as_ref().is_none_or(test)
        }
        key(&self.cgroup, |globs| {
            facts
                .cgroup
                .as_deref()
                .is_some_and(|c| any_matches(globs, c))
        }) && key(&self.uid, |uids| {
            facts.uid.is_some_and(|u| uids.contains(&u))
        }) && key(&self.exe, |globs| {
            facts
                .exe
                .as_deref()
                .and_then(|e| e.to_str())
                .is_some_and(|e| any_matches(globs, e))
        }) && key(&self.comm, |globs| {
            facts.comm.as_deref().is_some_and(|c| any_matches(globs, c))
        }) && key(&self.token_subject, |globs| {
            facts
                .token_subject
                .as_deref()
                .is_some_and(|s| any_matches(globs, s))
        }) && key(&self.token_group, |globs| {
            facts.token_groups.iter().any(|g| any_matches(globs, g))
        }) && key(&self.remote, |nets| {
            facts
                .remote
                .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)))
        })
    }
}

/// Parses the `--identity` argument of `tollgate explain`: comma-separated `key=value` pairs
/// with keys uid, exe, comm, cgroup, subject, group (repeatable), remote.
pub fn parse_identity_spec(spec: &str) -> Result<IdentityFacts, String> {
    let mut facts = IdentityFacts::default();
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("identity: expected key=value, got {pair:?}"))?;
        match key {
            "uid" => {
                facts.uid = Some(
                    value
                        .parse()
                        .map_err(|_| format!("identity: uid {value:?} is not a number"))?,
                )
            }
            "exe" => facts.exe = Some(PathBuf::from(value)),
            "comm" => facts.comm = Some(value.to_owned()),
            "cgroup" => facts.cgroup = Some(value.to_owned()),
            "subject" => facts.token_subject = Some(value.to_owned()),
            "group" => facts.token_groups.push(value.to_owned()),
            "remote" => {
                facts.remote = Some(
                    value
                        .parse()
                        .map_err(|_| format!("identity: remote {value:?} is not an IP address"))?,
                )
            }
            other => {
                return Err(format!(
                    "identity: unknown key {other:?} (expected uid, exe, comm, cgroup, subject, \
                     group or remote)"
                ))
            }
        }
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher() -> IdentityMatcher {
        IdentityMatcher {
            id: "agents".into(),
            cgroup: Some(vec![Glob::new("/agents/*")]),
            uid: None,
            exe: Some(vec![
                Glob::new("/usr/bin/psql"),
                Glob::new("/usr/bin/python3*"),
            ]),
            comm: None,
            token_subject: None,
            token_group: None,
            remote: None,
        }
    }

    #[test]
    fn every_given_key_must_match_and_any_entry_of_a_key_may() {
        let facts = parse_identity_spec("cgroup=/agents/claude,exe=/usr/bin/python3.11").unwrap();
        assert!(matcher().matches(&facts));
        let wrong_exe = parse_identity_spec("cgroup=/agents/claude,exe=/usr/bin/curl").unwrap();
        assert!(!matcher().matches(&wrong_exe));
        let no_cgroup = parse_identity_spec("exe=/usr/bin/psql").unwrap();
        assert!(
            !matcher().matches(&no_cgroup),
            "an unknown fact never matches"
        );
    }

    #[test]
    fn token_groups_and_remote_networks_match() {
        let mut m = matcher();
        m.cgroup = None;
        m.exe = None;
        m.token_group = Some(vec![Glob::new("research-*")]);
        m.remote = Some(vec!["10.0.0.0/8".parse().unwrap()]);
        let yes = parse_identity_spec("group=staff,group=research-ai,remote=10.1.2.3").unwrap();
        assert!(m.matches(&yes));
        let outside = parse_identity_spec("group=research-ai,remote=192.168.1.1").unwrap();
        assert!(!m.matches(&outside));
    }

    #[test]
    fn identity_specs_name_the_bad_key() {
        assert!(parse_identity_spec("uid=abc").unwrap_err().contains("uid"));
        assert!(parse_identity_spec("colour=red")
            .unwrap_err()
            .contains("colour"));
        assert!(parse_identity_spec("uid")
            .unwrap_err()
            .contains("key=value"));
    }
}
