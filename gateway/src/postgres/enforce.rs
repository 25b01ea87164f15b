//! Policy on the request path: each statement of a request is analysed (cached by text),
//! resolved through the catalog and decided. A denied statement never reaches the server: its
//! message is replaced by one the server rejects with an error that carries a marker, and the
//! backend pump turns that error into the denial. The server thereby reports exactly the
//! transaction state and skip-to-Sync behaviour PostgreSQL has for a failed statement.

mod held;
mod recent;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use bytes::BytesMut;
use pgwire::messages::{
    extendedquery::{Execute, Parse},
    simplequery::Query,
    PgWireFrontendMessage,
};

pub use self::held::HeldStatement;
use self::held::Provisional;
use self::recent::RecentDecisions;
use super::{
    catalog::{wanted_names, CatalogAccess, CatalogSlot, CatalogStore, PendingChanges},
    codec::unreadable_reason,
    errors::{sqlstate, ClientError},
    names::{Portal, Prepared, SessionNames},
    pipeline::Position,
    redact::parameterised_sql,
    request::{Request, Statement},
    results::{MaskContext, QueryRules, ResultRule, Rule, StatementResults},
    settings::TaintedSettings,
};
use crate::{
    policy::{
        derived::{
            Derived, DerivedColumn, DerivedRecord, DerivedStore, Provenance, SettingsRecord,
            TEMP_SCHEMA,
        },
        evaluate, Catalog, Decision, HoldOver, IdentityFacts, Loaded, MaskPlan, PolicyStore,
        Resolved, Resolver, StatementView, TargetClassification,
    },
    sql::{
        explain_analyze_of, literal_shape, may_run_user_code, CopyDirection, CopyEndpoint,
        CopyFacts, FactsCache, StatementFacts, StatementKind, Store,
    },
};

/// The marker a replaced message makes the server quote in its error.
const DENIED_MARKER: &str = "TOLLGATE_DENIED_";
/// Distinct SQL texts whose analysis is kept.
const FACTS_CACHE_ENTRIES: usize = 4096;

/// Policy enforcement shared by every session.
pub struct Enforcement {
    pub store: Arc<PolicyStore>,
    facts: FactsCache,
    catalogs: CatalogStore,
    /// Per target: how to read its catalog (absent: provenance comes from names only).
    access: HashMap<String, CatalogAccess>,
    /// Columns of persistent tables that agents filled from classified data.
    pub derived: Arc<DerivedStore>,
}

impl Enforcement {
    pub fn new(
        store: Arc<PolicyStore>,
        access: HashMap<String, CatalogAccess>,
        derived: Arc<DerivedStore>,
    ) -> Self {
        Self {
            store,
            facts: FactsCache::new(FACTS_CACHE_ENTRIES),
            catalogs: CatalogStore::default(),
            access,
            derived,
        }
    }

    /// Starts a session's enforcement, or refuses it: an identity no allow rule names for
    /// this target gets nothing.
    pub fn admit(
        self: &Arc<Self>,
        target: &str,
        server: std::net::SocketAddr,
        database: &str,
        identity: IdentityFacts,
        client_settings: HashSet<String>,
    ) -> Result<SessionEnforcement, ClientError> {
        let loaded = self.store.current();
        let identities = loaded.policy.identities_of(&identity);
        if !loaded.policy.admits(target, &identities) {
            return Err(not_admitted(target));
        }
        let derived_seen = self.derived.generation();
        let classes = classification(&loaded, target, &self.derived, &[]);
        let context = MaskContext {
            catalog: None,
            classes,
            key: self.store.token_key.clone(),
        };
        Ok(SessionEnforcement {
            shared: self.clone(),
            target: target.to_owned(),
            identity,
            identities,
            recent: RecentDecisions::new(loaded.generation, context),
            catalog: self
                .access
                .contains_key(target)
                .then(|| self.catalogs.slot(target, server, database)),
            catalog_changes: PendingChanges::default(),
            next_denial: 0,
            temporary: Derived::default(),
            derived_seen,
            provisional: Provisional::default(),
            settings: Arc::new(TaintedSettings::new(
                self.derived.settings_flag(target),
                client_settings,
            )),
        })
    }
}

fn not_admitted(target: &str) -> ClientError {
    ClientError::fatal(
        sqlstate::INVALID_AUTHORIZATION,
        format!("Tollgate: no policy rule grants this agent access to target {target}"),
    )
}

/// The denial a server error message stands for, by the marker its stand-in made the
/// server quote.
pub fn denial_marker(message: &str) -> Option<u32> {
    let at = message.find(DENIED_MARKER)? + DENIED_MARKER.len();
    let digits: String = message[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// One statement's outcome, for the record.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub decision: &'static str,
    pub rule: Arc<str>,
}

pub struct SessionEnforcement {
    shared: Arc<Enforcement>,
    target: String,
    identity: IdentityFacts,
    identities: Vec<String>,
    catalog: Option<Arc<CatalogSlot>>,
    /// This session's DDL the server has not answered yet: unknown to its later requests.
    catalog_changes: PendingChanges,
    /// The marker the next denied statement's stand-in carries.
    next_denial: u32,
    /// Columns of this session's temporary tables filled from classified data.
    temporary: Derived,
    /// The derived store's generation the classification in force was built from.
    derived_seen: u64,
    /// Settings whose values may come from classified data.
    settings: Arc<TaintedSettings>,
    /// What the statements waiting for approval would derive, kept if they are approved.
    provisional: Provisional,
    /// The policy generation and catalog snapshot in force for this session, with the
    /// target's classification, and the decisions made under them lately.
    recent: RecentDecisions,
}

/// What enforcement made of one request.
pub struct Inspection {
    /// Per statement, for the record.
    pub verdicts: Vec<Verdict>,
    /// Per statement, what its results need.
    pub results: Vec<StatementResults>,
    /// The target has classified data.
    pub protect: bool,
    /// Refused statements: the marker of each stand-in and the error the client gets.
    pub denials: Vec<(u32, ClientError)>,
    /// The stand-ins, by statement index: put in place once the request is recorded.
    pub replacements: Vec<(usize, BytesMut)>,
    /// Statements that run only once a person approves them.
    pub held: Vec<HeldStatement>,
}

/// One statement decided, with what its results need.
struct Decided {
    decision: Decision,
    resolved: Option<Resolved>,
    copy: Option<CopyFacts>,
    /// What it was decided (and its results are masked) against.
    context: Arc<MaskContext>,
}

/// The target's classification: the policy's, with the derived columns of the store and of
/// a session's temporary tables.
fn classification(
    loaded: &Loaded,
    target: &str,
    store: &DerivedStore,
    session: &[&Derived],
) -> Arc<TargetClassification> {
    let declared = loaded.policy.classification_for(target);
    let mut derived = Derived::default();
    derived.add(store.columns(target));
    for columns in session {
        derived.add(columns.columns().cloned());
    }
    Arc::new(declared.with_derived(derived))
}

/// The agent as a derived column's provenance names it.
fn describe_identity(identity: &IdentityFacts) -> String {
    let mut parts = Vec::new();
    if let Some(exe) = &identity.exe {
        parts.push(format!("exe {}", exe.display()));
    }
    if let Some(uid) = identity.uid {
        parts.push(format!("uid {uid}"));
    }
    if let Some(cgroup) = &identity.cgroup {
        parts.push(format!("cgroup {cgroup}"));
    }
    if let Some(subject) = &identity.token_subject {
        parts.push(format!("token subject {subject}"));
    }
    if let Some(remote) = identity.remote {
        parts.push(format!("remote {remote}"));
    }
    parts.join(", ")
}

impl SessionEnforcement {
    /// Decides every statement of the request and replaces the denied ones, or returns a
    /// FATAL error when the policy no longer admits the session. What the statements name
    /// is looked up in, and what they define or release noted in, the session's `names`;
    /// `position` is how far the server has answered.
    pub async fn inspect(
        &mut self,
        request: &mut Request,
        names: &mut SessionNames,
        position: Position,
    ) -> Result<Inspection, ClientError> {
        let loaded = self.shared.store.current();
        let new_policy = loaded.generation != self.recent.generation();
        if new_policy {
            // Re-checked under the new policy: who this session is, and whether it may stay.
            self.identities = loaded.policy.identities_of(&self.identity);
            if !loaded.policy.admits(&self.target, &self.identities) {
                return Err(not_admitted(&self.target));
            }
        }
        let catalog = match (&self.catalog, self.shared.access.get(&self.target)) {
            (Some(slot), Some(access)) => {
                // What the statements look up, read first if missing: decisions are made
                // on one snapshot, without waiting.
                let held = |facts: &StatementFacts| self.held_by(names, facts);
                let wanted = wanted_names(request, &self.shared.facts, &held);
                let settled = self.catalog_changes.settle(position, &wanted);
                slot.current(access, &wanted, &settled).await
            }
            _ => None,
        };
        let derived_changed = self.shared.derived.generation() != self.derived_seen;
        if new_policy || derived_changed {
            self.reclassify(&loaded, catalog);
        } else if !self.recent.made_with(catalog.as_ref()) {
            let classes = self.recent.context().classes.clone();
            self.resolve_with(&loaded, catalog, classes);
        }
        let count = request.statements.len();
        let mut inspection = Inspection {
            verdicts: Vec::with_capacity(count),
            results: Vec::with_capacity(count),
            protect: !self.recent.context().classes.is_empty(),
            denials: Vec::new(),
            replacements: Vec::new(),
            held: Vec::new(),
        };
        // The text parsed last: an extended-protocol request usually parses a statement and
        // executes it, which is one decision even for a text the session does not keep.
        let mut parsed: Option<(&str, (Decision, QueryRules))> = None;
        for (index, statement) in request.statements.iter().enumerate() {
            let (decision, results) = match statement {
                Statement::Simple { sql } => {
                    let ((decision, rules), _) = self.decide_text(names, &loaded, sql, true);
                    (decision, StatementResults::Query(rules))
                }
                Statement::Prepare { sql, .. } => {
                    let (decided, repeatable) = self.decide_text(names, &loaded, sql, false);
                    let decision = decided.0.clone();
                    // Its Execute decides again when running it has effects to note.
                    parsed = repeatable.then_some((sql, decided));
                    (decision, StatementResults::Parse)
                }
                Statement::Execute { sql, .. } => {
                    let (decision, rules) = match (sql, &parsed) {
                        (Some(sql), Some((text, decided))) if **sql == **text => decided.clone(),
                        (Some(sql), _) => self.decide_text(names, &loaded, sql, true).0,
                        (None, _) => {
                            let decided = self.decide(names, &loaded, None, true);
                            let rule = result_rule(&decided);
                            (decided.decision, single(rule))
                        }
                    };
                    // A prepared statement holds one statement; a portal runs it.
                    let rule = rules.statements.first().cloned().unwrap_or(rules.beyond);
                    (decision, StatementResults::Execute(rule))
                }
            };
            let (decision, estimate, cap) = self.settle(decision, statement).await;
            let results = match cap {
                Some(over) => self.capped(results, &over),
                None => results,
            };
            inspection.verdicts.push(verdict_of(&decision));
            let invalid = invalid_text_error(statement);
            if let (None, Decision::RequireApproval(refusal, _)) = (&invalid, &decision) {
                // A Parse only prepares: what runs it (an Execute) is what waits.
                if !matches!(statement, Statement::Prepare { .. }) {
                    let rule = refusal.rule.clone();
                    let mut held =
                        HeldStatement::of(index, rule, statement, &results, &self.shared.facts);
                    held.timeout = loaded.policy.approval_timeout(&held.rule);
                    held.row_estimate = estimate;
                    inspection.held.push(held);
                }
                inspection.results.push(results);
                continue;
            }
            if let Some(error) = invalid.or_else(|| refusal_error(&decision)) {
                let id = self.next_denial;
                self.next_denial = self.next_denial.wrapping_add(1);
                inspection.denials.push((id, error));
                inspection
                    .replacements
                    .push((index, replacement(statement, id)));
            }
            inspection.results.push(results);
        }
        Ok(inspection)
    }

    /// All statements of one SQL text: the first that is not allowed decides; each allowed
    /// one gets the rule for its results. A text decided lately gets the same decision.
    ///
    /// `runs`: the statements run now (a simple Query, an Execute), so what they define or
    /// release of the session's names is noted; a Parse only prepares. Also returns whether
    /// the decision holds for another run of the text (it has no such effects).
    fn decide_text(
        &mut self,
        names: &mut SessionNames,
        loaded: &Loaded,
        sql: &str,
        runs: bool,
    ) -> ((Decision, QueryRules), bool) {
        let shape = literal_shape(sql);
        let key = shape.as_deref().unwrap_or(sql);
        if let Some(decided) = self.recent.get(key, shape.is_some()) {
            return (decided.clone(), true);
        }
        let analysis = self.shared.facts.get_shaped(sql, shape.as_deref());
        let decided = match analysis.as_ref() {
            Ok(analysis) => self.decide_statements(names, loaded, &analysis.statements, runs),
            Err(_) => {
                let decided = self.decide(names, loaded, None, runs);
                let rule = result_rule(&decided);
                (decided.decision, single(rule))
            }
        };
        let protect = !self.recent.context().classes.is_empty();
        let repeatable = analysis
            .as_ref()
            .as_ref()
            .is_ok_and(|a| !a.statements.iter().any(|f| session_bound(f, protect)));
        if repeatable && RecentDecisions::keeps(key) {
            self.recent.insert(key, shape.is_some(), decided.clone());
        }
        (decided, repeatable)
    }

    fn decide_statements(
        &mut self,
        names: &mut SessionNames,
        loaded: &Loaded,
        statements: &[StatementFacts],
        runs: bool,
    ) -> (Decision, QueryRules) {
        let mut allowed = None;
        let mut held = None;
        let mut hold_over: Option<HoldOver> = None;
        let mut rules = Vec::with_capacity(statements.len());
        for facts in statements {
            let decided = self.decide(names, loaded, Some(facts), runs);
            rules.push(result_rule(&decided));
            match decided.decision {
                Decision::Allow(plan) => {
                    allowed.get_or_insert(plan);
                }
                // One estimate for the text (none for several statements): the smallest
                // limit applies, and a write among them makes the text wait.
                Decision::AllowUnlessOver(plan, over) => {
                    allowed.get_or_insert(plan);
                    hold_over = Some(HoldOver::stricter(hold_over.take(), over));
                }
                // The text waits for approval; a later statement may still be denied.
                Decision::RequireApproval(refusal, plan) => {
                    held.get_or_insert(refusal);
                    allowed.get_or_insert(plan);
                }
                denied => return (denied, QueryRules::default()),
            }
        }
        // Should the server see more statements than the parser did, they are treated as
        // untraceable under the first statement's plan.
        let beyond = allowed.as_ref().and_then(|plan| {
            let decided = Decided {
                decision: Decision::Allow(plan.clone()),
                resolved: None,
                copy: None,
                context: self.recent.context().clone(),
            };
            result_rule(&decided)
        });
        // An empty query string runs nothing (the server answers EmptyQueryResponse).
        let plan = allowed.unwrap_or_else(|| MaskPlan {
            rule: "empty-query".into(),
            protect: false,
            methods: Default::default(),
            max_rows: None,
            max_bytes: None,
        });
        let rules = QueryRules {
            statements: rules.into(),
            beyond,
        };
        match (held, hold_over) {
            (Some(refusal), _) => (Decision::RequireApproval(refusal, plan), rules),
            (None, Some(over)) => (Decision::AllowUnlessOver(plan, over), rules),
            (None, None) => (Decision::Allow(plan), rules),
        }
    }

    /// Decides one statement under the classification in force now (a statement before it
    /// in the same request may have derived more).
    fn decide(
        &mut self,
        names: &mut SessionNames,
        loaded: &Loaded,
        facts: Option<&StatementFacts>,
        runs: bool,
    ) -> Decided {
        let context = self.recent.context().clone();
        let resolver = Resolver {
            catalog: context.catalog.as_deref(),
            classes: &context.classes,
        };
        let protect = !resolver.classes.is_empty();
        let unparsed = |this: &Self| Decided {
            decision: evaluate(
                &loaded.policy,
                &this.target,
                &this.identities,
                protect,
                StatementView::Unparsed,
            ),
            resolved: None,
            copy: None,
            context: context.clone(),
        };
        let Some(facts) = facts else {
            let decided = unparsed(self);
            if runs && decided.decision.plan().is_some() {
                // It may prepare, declare, release or set anything.
                names.forget_all();
                let held = may_wait(&decided.decision);
                self.opaque_code_runs(protect, "an unparsed statement", held);
            }
            return decided;
        };
        // What actually runs: the prepared statement or cursor query a statement names.
        let effective: Option<Arc<StatementFacts>> = match facts.kind {
            StatementKind::Prepare => facts
                .prepared
                .as_ref()
                .map(|(_, f)| Arc::new((**f).clone())),
            StatementKind::Declare => facts
                .cursor_query
                .as_ref()
                .map(|(_, f)| Arc::new((**f).clone())),
            StatementKind::Execute | StatementKind::Fetch => self.held_by(names, facts),
            // `EXPLAIN ANALYZE EXECUTE name` runs the prepared statement as well.
            StatementKind::Explain => match &facts.executes {
                Some(_) => match self.held_by(names, facts) {
                    Some(prepared) => Some(Arc::new(explain_analyze_of(facts, &prepared))),
                    None => return unparsed(self),
                },
                None => None,
            },
            _ => None,
        };
        if matches!(facts.kind, StatementKind::Execute | StatementKind::Fetch)
            && effective.is_none()
        {
            // EXECUTE or FETCH of something not prepared or declared through Tollgate.
            return unparsed(self);
        }
        let target_facts = effective.as_deref().unwrap_or(facts);
        let resolved = resolver.resolve(target_facts);
        let decision = evaluate(
            &loaded.policy,
            &self.target,
            &self.identities,
            protect,
            StatementView::Parsed {
                facts: target_facts,
                resolved: &resolved,
            },
        );
        let changes_schema = changes_schema(target_facts.kind);
        // A statement held for approval is taken as running: should it be refused, it fails
        // like any statement the server rejects, and what was noted of the session's names
        // and settings only masks more. What it derives for other sessions waits for the
        // decision (see `held.rs`).
        let may_run = decision.plan().is_some();
        let held = may_wait(&decision);
        if let (true, true, Some(slot)) = (may_run, changes_schema, &self.catalog) {
            // Relations may appear, change or go: what it names is read again when next used.
            slot.forget_ddl(target_facts);
        }
        let allowed_run = runs && may_run;
        if allowed_run {
            track_names(names, facts, effective.as_ref());
            if protect {
                self.track_settings(target_facts, &resolved, held);
            }
        }
        let resolved = self.mask_shown_setting(facts, resolved);
        // PREPARE only prepares: what it stores is noted when EXECUTE runs it.
        if allowed_run
            && protect
            && !resolved.stored.is_empty()
            && facts.kind != StatementKind::Prepare
        {
            self.derive(loaded, &resolved.stored, target_facts, held);
        }
        // PREPARE and DECLARE return no rows themselves; EXECUTE and FETCH return the rows
        // of what they name, which is what `resolved` describes.
        let resolved = match facts.kind {
            StatementKind::Prepare | StatementKind::Declare => Resolved {
                outputs: Some(Vec::new()),
                ..resolved
            },
            _ => resolved,
        };
        Decided {
            decision,
            resolved: Some(resolved),
            copy: target_facts.copy.clone(),
            context,
        }
    }

    /// The session's handle on its tainted settings (the backend masks their reports).
    pub fn settings(&self) -> Arc<TaintedSettings> {
        self.settings.clone()
    }

    /// What an allowed statement that runs may put into settings: `set_config` of values
    /// it read from classified (or untraceable) data, or anything at all from code Tollgate
    /// cannot read.
    fn track_settings(&mut self, facts: &StatementFacts, resolved: &Resolved, held: bool) {
        let opaque = matches!(facts.kind, StatementKind::Do | StatementKind::Call)
            || facts.functions.iter().any(|f| may_run_user_code(f));
        if opaque {
            self.opaque_code_runs(true, &facts.command, held);
        }
        if resolved.classified || resolved.unknown {
            for setting in &facts.settings_set {
                self.settings.taint(setting.as_deref());
            }
        }
    }

    /// Code Tollgate cannot read runs: it may set any setting, for this session or (`ALTER
    /// ROLE | DATABASE | SYSTEM ... SET`) for every later one. On a target with classified
    /// data the store keeps the second, so that later sessions read inherited settings masked.
    fn opaque_code_runs(&mut self, protect: bool, statement: &str, held: bool) {
        self.settings.taint(None);
        if !protect {
            return;
        }
        let record = SettingsRecord {
            target: self.target.clone(),
            provenance: Provenance {
                sources: Vec::new(),
                statement: statement.to_owned(),
                identity: describe_identity(&self.identity),
                at: crate::clock::rfc3339_utc(std::time::SystemTime::now()),
            },
        };
        if held {
            self.provisional.settings = Some(record);
            return;
        }
        if let Err(error) = self.shared.derived.record_settings(record) {
            // Marked in memory all the same; the file is what a restart would lose.
            tracing::error!(event = "classified.store_failed", %error, "settings mark not saved");
        }
    }

    /// `SHOW` of a tainted setting returns it masked, and so does a statement that reads
    /// settings with `current_setting` once any may hold classified data.
    fn mask_shown_setting(&self, facts: &StatementFacts, resolved: Resolved) -> Resolved {
        let reads_settings = facts
            .functions
            .iter()
            .any(|f| f.rsplit('.').next() == Some("current_setting"));
        let tainted = match facts.shows.as_deref() {
            Some("all") => self.settings.any(),
            Some(name) => self.settings.is_tainted(name),
            None => reads_settings && self.settings.any(),
        };
        match tainted {
            true => Resolved {
                outputs: None,
                unknown: true,
                ..resolved
            },
            false => resolved,
        }
    }

    /// Notes columns a statement fills from classified data: a temporary table's for the
    /// session, a persistent table's in the store (every session, across restarts). The
    /// classification in force is rebuilt at once, for the rest of the request too.
    fn derive(
        &mut self,
        loaded: &Loaded,
        stored: &[DerivedColumn],
        facts: &StatementFacts,
        held: bool,
    ) {
        let (temporary, persistent): (Vec<_>, Vec<_>) = stored
            .iter()
            .cloned()
            .partition(|c| c.schema == TEMP_SCHEMA);
        if held {
            // Masked for this session's later statements at once; kept only if approved.
            let records = self.derived_records(&persistent, facts);
            if self.provisional.hold(stored, records) {
                let catalog = self.recent.context().catalog.clone();
                self.reclassify(loaded, catalog);
            }
            return;
        }
        let mut changed = self.temporary.add(temporary);
        let generation = self.shared.derived.generation();
        if !persistent.is_empty() {
            let records = self.derived_records(&persistent, facts);
            if let Err(error) = self.shared.derived.record(records) {
                // Known in memory all the same; the file is what a restart would lose.
                tracing::error!(event = "classified.store_failed", %error, "derived classification not saved");
            }
        }
        // The same copy made again (a loop of INSERT ... SELECT) changes nothing.
        changed |= self.shared.derived.generation() != generation;
        if changed {
            let catalog = self.recent.context().catalog.clone();
            self.reclassify(loaded, catalog);
        }
    }

    /// The store's records of columns a statement fills from classified data.
    fn derived_records(
        &self,
        columns: &[DerivedColumn],
        facts: &StatementFacts,
    ) -> Vec<DerivedRecord> {
        let provenance = Provenance {
            sources: facts.reads.iter().map(ToString::to_string).collect(),
            statement: facts.command.clone(),
            identity: describe_identity(&self.identity),
            at: crate::clock::rfc3339_utc(std::time::SystemTime::now()),
        };
        columns
            .iter()
            .map(|column| DerivedRecord::new(&self.target, column.clone(), provenance.clone()))
            .collect()
    }

    /// Rebuilds the classification in force: the policy's, the store's derived columns and
    /// this session's temporary ones (and those of a statement waiting for approval).
    fn reclassify(&mut self, loaded: &Loaded, catalog: Option<Arc<Catalog>>) {
        self.derived_seen = self.shared.derived.generation();
        let session = [&self.temporary, &self.provisional.columns];
        let classes = classification(loaded, &self.target, &self.shared.derived, &session);
        self.resolve_with(loaded, catalog, classes);
    }

    fn resolve_with(
        &mut self,
        loaded: &Loaded,
        catalog: Option<Arc<Catalog>>,
        classes: Arc<TargetClassification>,
    ) {
        self.recent = RecentDecisions::new(
            loaded.generation,
            MaskContext {
                catalog,
                classes,
                key: self.shared.store.token_key.clone(),
            },
        );
    }

    /// A decision that waits on the row estimate, settled for this run of `statement`, with
    /// the estimate when one was asked for, and the `rows_over` rule whose limit caps what it
    /// returns when the estimate let it through. A Parse only prepares: its Execute settles.
    async fn settle(
        &self,
        decision: Decision,
        statement: &Statement,
    ) -> (Decision, Option<u64>, Option<HoldOver>) {
        match decision {
            Decision::AllowUnlessOver(plan, _)
                if matches!(statement, Statement::Prepare { .. }) =>
            {
                (Decision::Allow(plan), None, None)
            }
            Decision::AllowUnlessOver(plan, over) => {
                // A write waits whatever the estimate (and its text is not planned here).
                let estimate = match statement.sql() {
                    Some(sql) if !over.writes => self.estimate_rows(sql).await,
                    _ => None,
                };
                match Decision::AllowUnlessOver(plan, over.clone()).settle(estimate) {
                    allowed @ Decision::Allow(_) => (allowed, estimate, Some(over)),
                    held => (held, estimate, None),
                }
            }
            decided => (decided, None, None),
        }
    }

    /// The results of a statement a `rows_over` rule let through on the planner's word: no
    /// more rows than the rule's limit reach the agent, whatever the estimate missed (a
    /// generic plan knows no values). The rows past it are dropped, and the agent is told.
    fn capped(&self, results: StatementResults, over: &HoldOver) -> StatementResults {
        let cap = |rule: &Rule| -> Rule {
            let mut capped = match rule {
                Some(rule) => ResultRule::clone(rule),
                None => ResultRule {
                    plan: MaskPlan {
                        rule: over.refusal.rule.clone(),
                        protect: false,
                        methods: Default::default(),
                        max_rows: None,
                        max_bytes: None,
                    },
                    parsed: None,
                    mask_columns: false,
                    scrub_messages: false,
                    copy: None,
                    context: self.recent.context().clone(),
                },
            };
            // The notice names the rule whose limit cuts.
            if capped.plan.max_rows.is_none_or(|max| over.rows < max) {
                capped.plan.max_rows = Some(over.rows);
                capped.plan.rule = over.refusal.rule.clone();
            }
            Some(Arc::new(capped))
        };
        match results {
            StatementResults::Query(rules) => StatementResults::Query(QueryRules {
                statements: rules.statements.iter().map(cap).collect(),
                beyond: cap(&rules.beyond),
            }),
            StatementResults::Execute(rule) => StatementResults::Execute(cap(&rule)),
            StatementResults::Parse => StatementResults::Parse,
        }
    }

    /// The planner's estimate of the rows the statement `sql` returns or touches, asked of
    /// the session's database without any of its values (see `catalog::estimate`). None for
    /// a text of several statements: no single plan speaks for them.
    pub async fn estimate_rows(&self, sql: &str) -> Option<u64> {
        let (slot, access) = (
            self.catalog.as_ref()?,
            self.shared.access.get(&self.target)?,
        );
        self.single_statement(sql)?;
        slot.estimate(access, &parameterised_sql(sql)).await
    }

    /// The schema and name of the function with this OID on the session's database, when
    /// its catalog can be read.
    pub async fn function_name(&self, oid: u32) -> Option<(String, String)> {
        let (slot, access) = (
            self.catalog.as_ref()?,
            self.shared.access.get(&self.target)?,
        );
        slot.function(access, oid).await
    }

    /// What a statement runs through a name, if Tollgate knows: the prepared statement an
    /// `EXECUTE` names, or the query of the cursor a `FETCH` reads.
    fn held_by(&self, names: &SessionNames, facts: &StatementFacts) -> Option<Arc<StatementFacts>> {
        if let Some(name) = &facts.executes {
            return match names.prepared(name)? {
                Prepared::Facts(statement) => Some(statement),
                Prepared::Text(sql) => self.single_statement(&sql),
            };
        }
        match names.portal(facts.cursor.as_deref()?)? {
            Portal::Cursor(query) => Some(query),
            Portal::Bound { sql, .. } => self.single_statement(&sql?),
        }
    }

    /// The statement a text the protocol prepared holds (it holds at most one).
    fn single_statement(&self, sql: &str) -> Option<Arc<StatementFacts>> {
        match self.shared.facts.get(sql).as_ref() {
            Ok(analysis) if analysis.statements.len() == 1 => {
                Some(Arc::new(analysis.statements[0].clone()))
            }
            _ => None,
        }
    }
}

/// What an allowed statement that ran defines or releases of the session's names.
fn track_names(
    names: &mut SessionNames,
    facts: &StatementFacts,
    inner: Option<&Arc<StatementFacts>>,
) {
    if let Some((name, _)) = &facts.prepared {
        names.prepare(name, inner.cloned());
    }
    if let Some((name, _)) = &facts.cursor_query {
        names.declare(name, inner.cloned(), facts.cursor_holds);
    }
    // A release takes effect once the server has answered without error: the statement
    // may yet fail or be skipped, and the name would still exist. The end of a transaction
    // is read off the server's ReadyForQuery.
    if let Some(released) = &facts.released {
        names.release(released.clone());
    }
    // Procedural code runs SQL Tollgate does not see.
    if matches!(facts.kind, StatementKind::Do | StatementKind::Call) {
        names.forget_all();
    }
}

fn single(rule: Rule) -> QueryRules {
    QueryRules {
        statements: Arc::new([rule.clone()]),
        beyond: rule,
    }
}

/// Statements whose decision reads or changes this session's own state (its SQL-level
/// prepared statements and cursors, the freshness of the catalog): never taken from
/// [`RecentDecisions`].
///
/// `protect`: the target has classified data, so what a statement stores and what it does to
/// settings is noted when it runs (and reading settings depends on that).
fn session_bound(facts: &StatementFacts, protect: bool) -> bool {
    let follows_phi = protect
        && (facts.stores.iter().any(Store::may_carry_data)
            || !facts.settings_set.is_empty()
            || facts.shows.is_some()
            || (facts.functions.iter()).any(|f| f.ends_with("current_setting")));
    changes_schema(facts.kind)
        || facts.prepared.is_some()
        || facts.cursor_query.is_some()
        || facts.executes.is_some()
        || facts.cursor.is_some()
        || facts.released.is_some()
        || facts.ends_transaction
        || follows_phi
        || matches!(facts.kind, StatementKind::Do | StatementKind::Call)
}

fn changes_schema(kind: StatementKind) -> bool {
    matches!(
        kind,
        StatementKind::Create | StatementKind::Alter | StatementKind::Drop
    )
}

/// What it derives is kept only once it runs: it waits for approval (a write a `rows_over`
/// rule matched always does).
fn may_wait(decision: &Decision) -> bool {
    match decision {
        Decision::RequireApproval(..) => true,
        Decision::AllowUnlessOver(_, over) => over.writes,
        Decision::Allow(_) | Decision::Deny(_) => false,
    }
}

fn verdict_of(decision: &Decision) -> Verdict {
    let (decision, rule) = match decision {
        Decision::Allow(plan) => ("allow", &plan.rule),
        Decision::Deny(refusal) => ("deny", &refusal.rule),
        // Settled before it is sent; were it not, it would wait.
        Decision::RequireApproval(refusal, _)
        | Decision::AllowUnlessOver(_, HoldOver { refusal, .. }) => {
            ("require_approval", &refusal.rule)
        }
    };
    Verdict {
        decision,
        rule: rule.clone(),
    }
}

/// What an allowed statement's results need: masks when it returns classified or
/// untraceable values, scrubbed messages when it touches classified data, caps when the
/// rule has them. Without facts (unparsed) everything is treated as untraceable.
fn result_rule(decided: &Decided) -> Rule {
    let context = &decided.context;
    let plan = decided.decision.plan()?;
    let (mask_columns, scrub_messages) = match &decided.resolved {
        Some(resolved) => (
            needs_masking(plan, resolved),
            plan.protect && (resolved.classified || resolved.unknown),
        ),
        None => (plan.protect, plan.protect),
    };
    if !ResultRule::is_needed(mask_columns, scrub_messages, plan) {
        return None;
    }
    let copy = decided.copy.clone().filter(|copy| {
        copy.direction == CopyDirection::To && copy.endpoint == CopyEndpoint::Client
    });
    Some(Arc::new(ResultRule {
        plan: plan.clone(),
        parsed: decided.resolved.as_ref().and_then(|r| r.outputs.clone()),
        mask_columns,
        scrub_messages,
        copy,
        context: context.clone(),
    }))
}

fn needs_masking(plan: &MaskPlan, resolved: &Resolved) -> bool {
    if !plan.protect {
        return false;
    }
    match &resolved.outputs {
        Some(columns) => columns.iter().any(|c| plan.method_for(c).is_some()),
        None => resolved.classified || resolved.unknown,
    }
}

/// A statement text that is invalid in the client encoding is refused as the server refuses
/// it, whatever policy says of unparsed statements (it never runs).
fn invalid_text_error(statement: &Statement) -> Option<ClientError> {
    let sql = match statement {
        Statement::Simple { sql } | Statement::Prepare { sql, .. } => sql,
        Statement::Execute { .. } => return None,
    };
    let reason = unreadable_reason(sql)?;
    reason
        .starts_with("invalid byte sequence")
        .then(|| ClientError::error(sqlstate::CHARACTER_NOT_IN_REPERTOIRE, reason.to_owned()))
}

fn refusal_error(decision: &Decision) -> Option<ClientError> {
    let (refusal, what) = match decision {
        Decision::Deny(refusal) => (refusal, "denied"),
        _ => return None,
    };
    Some(ClientError::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!(
            "Tollgate: statement {what} by policy rule \"{}\": {}",
            refusal.rule, refusal.message
        ),
    ))
}

/// Stand-in messages by statement index.
pub type Standins = Vec<(usize, BytesMut)>;
/// The marker of each stand-in and the error the client gets for it.
pub type Denials = Vec<(u32, ClientError)>;

/// Every statement of a request refused with `error` (its record could not be written):
/// the stand-ins by statement index, and the denials they carry.
pub fn refuse_all(request: &Request, error: &ClientError) -> (Standins, Denials) {
    request
        .statements
        .iter()
        .enumerate()
        .map(|(index, statement)| {
            let id = index as u32;
            ((index, replacement(statement, id)), (id, error.clone()))
        })
        .unzip()
}

/// A message the server rejects, quoting the marker: a syntax error for SQL, an unknown
/// portal for Execute.
fn replacement(statement: &Statement, id: u32) -> BytesMut {
    let marker = format!("{DENIED_MARKER}{id}");
    let message = match statement {
        Statement::Simple { .. } => PgWireFrontendMessage::Query(Query::new(marker)),
        Statement::Prepare { name, .. } => PgWireFrontendMessage::Parse(Parse::new(
            Some(name.clone()).filter(|n| !n.is_empty()),
            marker,
            vec![],
        )),
        Statement::Execute { .. } => PgWireFrontendMessage::Execute(Execute::new(Some(marker), 0)),
    };
    let mut frame = BytesMut::new();
    message
        .encode(&mut frame)
        .expect("short frontend messages always encode");
    frame
}
