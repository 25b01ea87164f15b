//! Reading and validating a policy file. Every error names the file, the line and, for rules,
//! the rule id; a file with any error is rejected whole.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::Arc,
};

use ipnet::IpNet;
use toml::Spanned;

use super::{
    format::{RawClassify, RawIdentity, RawPolicy, RawRule},
    glob::Glob,
    identity::IdentityMatcher,
    mask::MaskMethod,
    rules::{
        Category, ClassifiedTable, Conditions, Effect, EndpointKind, Policy, Rule, KIND_NAMES,
    },
};
use crate::config::{deserialize_toml, line_of, ConfigError};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {}{message}", item.as_ref().map(|i| format!("{i}: ")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: usize,
        /// The rule or identity the error is in, e.g. `rule "deny-ddl"`.
        item: Option<String>,
        message: String,
    },
}

pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and validates policy text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Policy, PolicyError> {
    let raw: RawPolicy = deserialize_toml(path, text).map_err(|error| match error {
        ConfigError::Invalid {
            path,
            line,
            message,
            ..
        } => PolicyError::Invalid {
            path,
            line,
            item: None,
            message,
        },
        ConfigError::Read { path, source } => PolicyError::Read { path, source },
    })?;
    validate(path, raw).map_err(|issue| PolicyError::Invalid {
        path: path.to_owned(),
        line: line_of(text, issue.offset),
        item: issue.item,
        message: issue.message,
    })
}

struct Issue {
    offset: usize,
    item: Option<String>,
    message: String,
}

fn issue<T>(offset: usize, item: Option<&str>, message: impl Into<String>) -> Result<T, Issue> {
    Err(Issue {
        offset,
        item: item.map(str::to_owned),
        message: message.into(),
    })
}

fn validate(path: &Path, raw: RawPolicy) -> Result<Policy, Issue> {
    if *raw.version.get_ref() != 1 {
        return issue(
            raw.version.span().start,
            None,
            "version: only version 1 is understood",
        );
    }
    let identities = raw
        .identities
        .iter()
        .map(identity)
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = BTreeSet::new();
    for (raw, identity) in raw.identities.iter().zip(&identities) {
        if !seen.insert(identity.id.clone()) {
            return issue(
                raw.span().start,
                Some(&format!("identity {:?}", identity.id)),
                "identity id used twice",
            );
        }
    }
    let classified = raw
        .classify
        .iter()
        .map(classify)
        .collect::<Result<Vec<_>, _>>()?;
    let categories: BTreeSet<Category> = classified
        .iter()
        .flat_map(|table| table.columns.values().cloned())
        .collect();
    let masking = raw
        .masking
        .iter()
        .map(|(category, method)| {
            let at = method.span().start;
            let parsed = mask_method(method.get_ref())
                .or_else(|m| issue(at, None, format!("masking.{category}: {m}")))?;
            known_category(&categories, category)
                .or_else(|m| issue(at, None, format!("masking.{category}: {m}")))
                .map(|category| (category, parsed))
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    let mut rules = Vec::new();
    let mut rule_ids = BTreeSet::new();
    for raw_rule in &raw.rules {
        let rule = rule(raw_rule, &seen, &categories)?;
        if !rule_ids.insert(rule.id.clone()) {
            return issue(
                raw_rule.span().start,
                Some(&format!("rule {:?}", rule.id)),
                "rule id used twice",
            );
        }
        rules.push(rule);
    }
    // Denials first, then approvals, then grants: a deny rule always wins.
    rules.sort_by_key(|rule| rule.effect);
    let token_key_file = match &raw.tokenization {
        Some(tokenization) => match &tokenization.get_ref().key_file {
            Some(file) if !Path::new(file.get_ref()).is_absolute() => {
                return issue(
                    file.span().start,
                    None,
                    "tokenization.key_file: must be an absolute path",
                )
            }
            Some(file) => Some(PathBuf::from(file.get_ref())),
            None => None,
        },
        None => None,
    };
    for rule in &mut rules {
        let mut methods = masking.clone();
        methods.extend(rule.masking.iter().map(|(c, m)| (c.clone(), *m)));
        rule.masking = Arc::new(methods);
    }
    Ok(Policy {
        source: path.to_owned(),
        identities,
        classified,
        masking,
        rules,
        token_key_file,
    })
}

fn mask_method(text: &str) -> Result<MaskMethod, String> {
    text.parse::<MaskMethod>()
        .map_err(|error| error.to_string())
}

fn known_category(categories: &BTreeSet<Category>, name: &str) -> Result<Category, String> {
    categories
        .iter()
        .find(|c| &***c == name)
        .cloned()
        .ok_or_else(|| {
            format!(
                "category {name:?} is not used by any [[classify]] entry (known: {})",
                categories
                    .iter()
                    .map(|c| &**c)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn globs(list: &Option<Vec<String>>) -> Option<Vec<Glob>> {
    list.as_ref()
        .map(|patterns| patterns.iter().map(|p| Glob::new(p)).collect())
}

fn identity(raw: &Spanned<RawIdentity>) -> Result<IdentityMatcher, Issue> {
    let offset = raw.span().start;
    let raw = raw.get_ref();
    let id = raw.id.get_ref().trim().to_owned();
    let label = format!("identity {id:?}");
    if id.is_empty() || id == "*" {
        return issue(
            offset,
            None,
            "identities: id must be a non-empty name other than \"*\"",
        );
    }
    let remote = match &raw.remote {
        Some(nets) => Some(
            nets.iter()
                .map(|n| {
                    n.parse::<IpNet>()
                        .or_else(|_| n.parse::<std::net::IpAddr>().map(IpNet::from))
                        .or_else(|_| {
                            issue(
                                offset,
                                Some(&label),
                                format!("remote: {n:?} is not a network"),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let matcher = IdentityMatcher {
        id: id.clone(),
        cgroup: globs(&raw.cgroup),
        uid: raw.uid.clone(),
        exe: globs(&raw.exe),
        comm: globs(&raw.comm),
        token_subject: globs(&raw.token_subject),
        token_group: globs(&raw.token_group),
        remote,
    };
    let keys = [
        matcher.cgroup.is_some(),
        matcher.uid.is_some(),
        matcher.exe.is_some(),
        matcher.comm.is_some(),
        matcher.token_subject.is_some(),
        matcher.token_group.is_some(),
        matcher.remote.is_some(),
    ];
    if !keys.contains(&true) {
        return issue(
            offset,
            Some(&label),
            "an identity needs at least one of cgroup, uid, exe, comm, token_subject, \
             token_group, remote",
        );
    }
    Ok(matcher)
}

fn classify(raw: &Spanned<RawClassify>) -> Result<ClassifiedTable, Issue> {
    let offset = raw.span().start;
    let raw = raw.get_ref();
    let Some((schema, table)) = raw.table.get_ref().split_once('.') else {
        return issue(
            raw.table.span().start,
            None,
            "classify.table: write it as schema.table (e.g. public.patients)",
        );
    };
    if schema.is_empty() || table.is_empty() || table.contains('.') {
        return issue(
            raw.table.span().start,
            None,
            "classify.table: write it as schema.table",
        );
    }
    if raw.columns.is_empty() {
        return issue(offset, None, "classify.columns: name at least one column");
    }
    for category in raw.columns.values() {
        let valid = !category.is_empty()
            && category
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return issue(
                offset,
                None,
                format!("classify.columns: category {category:?} must be lower-case letters, digits and _"),
            );
        }
    }
    Ok(ClassifiedTable {
        schema: schema.to_owned(),
        table: table.to_owned(),
        targets: raw.targets.clone(),
        columns: raw
            .columns
            .iter()
            .map(|(column, category)| (column.clone(), Category::from(category.as_str())))
            .collect(),
    })
}

fn rule(
    raw: &Spanned<RawRule>,
    identities: &BTreeSet<String>,
    categories: &BTreeSet<Category>,
) -> Result<Rule, Issue> {
    let offset = raw.span().start;
    let raw = raw.get_ref();
    let id = raw.id.get_ref().trim().to_owned();
    if id.is_empty() {
        return issue(offset, None, "rules: id must not be empty");
    }
    let label = format!("rule {id:?}");
    let fail = |message: String| issue::<Rule>(offset, Some(&label), message);
    let effect = match raw.effect.get_ref().as_str() {
        "deny" => Effect::Deny,
        "require_approval" => Effect::RequireApproval,
        "allow" => Effect::Allow,
        other => {
            return fail(format!(
                "effect {other:?}: expected deny, require_approval or allow"
            ))
        }
    };
    if let Some(ids) = &raw.identities {
        if let Some(unknown) = ids.iter().find(|i| *i != "*" && !identities.contains(*i)) {
            return fail(format!("identities: {unknown:?} is not a defined identity"));
        }
    } else if effect == Effect::Allow {
        return fail("an allow rule must name its identities (or \"*\" for everyone)".into());
    }
    let kinds = match &raw.kinds {
        Some(names) => Some(
            names
                .iter()
                .map(|name| {
                    KIND_NAMES
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, kind)| *kind)
                        .ok_or_else(|| name.clone())
                })
                .collect::<Result<Vec<_>, _>>()
                .or_else(|name| {
                    fail(format!(
                        "kinds: unknown statement kind {name:?} (expected one of {})",
                        KIND_NAMES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .map(|_| Vec::new())
                })?,
        ),
        None => None,
    };
    let copy_endpoints = match &raw.copy_endpoints {
        Some(names) => {
            let mut endpoints = Vec::new();
            for name in names {
                endpoints.push(match name.as_str() {
                    "client" => EndpointKind::Client,
                    "file" => EndpointKind::File,
                    "program" => EndpointKind::Program,
                    other => {
                        return fail(format!(
                            "copy_endpoints: {other:?}: expected client, file or program"
                        ))
                    }
                });
            }
            Some(endpoints)
        }
        None => None,
    };
    let reads_categories = match &raw.reads_categories {
        Some(names) => Some(
            names
                .iter()
                .map(|n| known_category(categories, n))
                .collect::<Result<Vec<_>, _>>()
                .or_else(|m| fail(format!("reads_categories: {m}")).map(|_| Vec::new()))?,
        ),
        None => None,
    };
    let when = Conditions {
        kinds,
        commands: raw
            .commands
            .as_ref()
            .map(|c| c.iter().map(|c| c.trim().to_ascii_uppercase()).collect()),
        tables: globs(&raw.tables),
        schemas: globs(&raw.schemas),
        functions: raw.functions.as_ref().map(|names| {
            names
                .iter()
                .map(|n| Glob::new(&n.to_ascii_lowercase()))
                .collect()
        }),
        copy_endpoints,
        role_change: raw.role_change,
        hidden_write: raw.hidden_write,
        explain_analyze: raw.explain_analyze,
        reads_classified: raw.reads_classified,
        writes_classified: raw.writes_classified,
        reads_categories,
        unbounded: raw.unbounded,
        unparsed: raw.unparsed.unwrap_or(false),
    };
    if when.unparsed && has_statement_conditions(&when) {
        return fail(
            "unparsed = true cannot be combined with conditions on what a statement does \
             (an unparsed statement's kind, tables and functions are unknown)"
                .into(),
        );
    }
    let shapes_results = raw.masking.is_some() || raw.max_rows.is_some() || raw.max_bytes.is_some();
    // What an approved statement returns is masked like an allowed one's.
    if shapes_results && effect == Effect::Deny {
        return fail(
            "masking, max_rows and max_bytes belong on allow and require_approval rules".into(),
        );
    }
    let timeout = match raw.timeout_s {
        Some(_) if effect != Effect::RequireApproval => {
            return fail("timeout_s belongs on require_approval rules".into())
        }
        Some(seconds) if !(1..=MAX_APPROVAL_TIMEOUT_S).contains(&seconds) => {
            return fail(format!(
                "timeout_s: must be 1 to {MAX_APPROVAL_TIMEOUT_S} seconds (a week)"
            ))
        }
        seconds => seconds.map(std::time::Duration::from_secs),
    };
    if raw.rows_over.is_some() && effect != Effect::RequireApproval {
        return fail(
            "rows_over belongs on require_approval rules (it holds only statements the planner \
             expects to be large)"
                .into(),
        );
    }
    if raw.rows_over.is_some() && shapes_results {
        return fail(
            "a rows_over rule holds statements the rules after it allow, and the allowing rule \
             masks their results: put masking, max_rows and max_bytes on that rule"
                .into(),
        );
    }
    let mut masking = BTreeMap::new();
    for (category, method) in raw.masking.iter().flatten() {
        let category = known_category(categories, category)
            .or_else(|m| fail(format!("masking: {m}")).map(|_| Category::from("")))?;
        let method = mask_method(method)
            .or_else(|m| fail(format!("masking.{category}: {m}")).map(|_| MaskMethod::Redact))?;
        masking.insert(category, method);
    }
    Ok(Rule {
        id: id.into(),
        effect,
        message: raw.message.clone(),
        identities: raw.identities.clone(),
        targets: raw.targets.clone(),
        when,
        // The overrides alone; the defaults are merged in once every rule is read.
        masking: Arc::new(masking),
        max_rows: raw.max_rows,
        max_bytes: raw.max_bytes,
        timeout,
        rows_over: raw.rows_over,
    })
}

/// A week, as `[approvals] timeout_s` allows.
const MAX_APPROVAL_TIMEOUT_S: u64 = 7 * 24 * 3600;

fn has_statement_conditions(when: &Conditions) -> bool {
    when.kinds.is_some()
        || when.commands.is_some()
        || when.tables.is_some()
        || when.schemas.is_some()
        || when.functions.is_some()
        || when.copy_endpoints.is_some()
        || when.role_change.is_some()
        || when.hidden_write.is_some()
        || when.explain_analyze.is_some()
        || when.reads_classified.is_some()
        || when.writes_classified.is_some()
        || when.reads_categories.is_some()
        || when.unbounded.is_some()
}
