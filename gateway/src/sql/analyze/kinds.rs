//! The kind of a statement and its command words.

use sqlparser::{
    ast::{Reset, Set, SetExpr, Statement},
    keywords::Keyword,
    tokenizer::Token,
};

use super::{super::names, StatementKind};

pub(super) fn classify(statement: &Statement) -> (StatementKind, String) {
    use StatementKind as K;
    let (kind, command) = match statement {
        Statement::Query(query) => match &*query.body {
            SetExpr::Insert(_) => (K::Insert, "INSERT"),
            SetExpr::Update(_) => (K::Update, "UPDATE"),
            SetExpr::Delete(_) => (K::Delete, "DELETE"),
            SetExpr::Merge(_) => (K::Merge, "MERGE"),
            body if select_into(body) => (K::Select, "SELECT INTO"),
            _ => (K::Select, "SELECT"),
        },
        Statement::Insert(_) => (K::Insert, "INSERT"),
        Statement::Update(_) => (K::Update, "UPDATE"),
        Statement::Delete(_) => (K::Delete, "DELETE"),
        Statement::Merge(_) => (K::Merge, "MERGE"),
        Statement::Copy { to: true, .. } => (K::CopyTo, "COPY"),
        Statement::Copy { to: false, .. } => (K::CopyFrom, "COPY"),
        Statement::CreateTable(table) if table.query.is_some() => (K::Create, "CREATE TABLE AS"),
        Statement::CreateTable(_) | Statement::CreateVirtualTable { .. } => {
            (K::Create, "CREATE TABLE")
        }
        Statement::CreateView(view) if view.materialized => (K::Create, "CREATE MATERIALIZED VIEW"),
        Statement::CreateView(_) => (K::Create, "CREATE VIEW"),
        Statement::CreateIndex(_) => (K::Create, "CREATE INDEX"),
        Statement::CreateRole(_) | Statement::CreateUser(_) => (K::Create, "CREATE ROLE"),
        Statement::CreateFunction(_) => (K::Create, "CREATE FUNCTION"),
        Statement::CreateProcedure { .. } => (K::Create, "CREATE PROCEDURE"),
        Statement::CreateSchema { .. } => (K::Create, "CREATE SCHEMA"),
        Statement::CreateDatabase { .. } => (K::Create, "CREATE DATABASE"),
        Statement::CreateExtension(_) => (K::Create, "CREATE EXTENSION"),
        Statement::CreateTrigger(_) => (K::Create, "CREATE TRIGGER"),
        Statement::CreateSequence { .. } => (K::Create, "CREATE SEQUENCE"),
        Statement::CreateType { .. } => (K::Create, "CREATE TYPE"),
        Statement::CreateDomain(_) => (K::Create, "CREATE DOMAIN"),
        Statement::CreatePolicy(_) => (K::Create, "CREATE POLICY"),
        Statement::CreateServer(_) => (K::Create, "CREATE SERVER"),
        Statement::CreateOperator(_) => (K::Create, "CREATE OPERATOR"),
        Statement::CreateOperatorFamily(_) => (K::Create, "CREATE OPERATOR FAMILY"),
        Statement::CreateOperatorClass(_) => (K::Create, "CREATE OPERATOR CLASS"),
        Statement::AlterTable(_) => (K::Alter, "ALTER TABLE"),
        Statement::AlterIndex { .. } => (K::Alter, "ALTER INDEX"),
        Statement::AlterView { .. } => (K::Alter, "ALTER VIEW"),
        Statement::AlterRole { .. } | Statement::AlterUser(_) => (K::Alter, "ALTER ROLE"),
        Statement::AlterSchema(_) => (K::Alter, "ALTER SCHEMA"),
        Statement::AlterType(_) => (K::Alter, "ALTER TYPE"),
        Statement::AlterPolicy(_) => (K::Alter, "ALTER POLICY"),
        Statement::AlterOperator(_) => (K::Alter, "ALTER OPERATOR"),
        Statement::AlterOperatorFamily(_) => (K::Alter, "ALTER OPERATOR FAMILY"),
        Statement::AlterOperatorClass(_) => (K::Alter, "ALTER OPERATOR CLASS"),
        Statement::Comment { .. } => (K::Alter, "COMMENT"),
        Statement::Drop { object_type, .. } => return (K::Drop, format!("DROP {object_type}")),
        Statement::DropFunction(_) => (K::Drop, "DROP FUNCTION"),
        Statement::DropProcedure { .. } => (K::Drop, "DROP PROCEDURE"),
        Statement::DropDomain(_) => (K::Drop, "DROP DOMAIN"),
        Statement::DropPolicy(_) => (K::Drop, "DROP POLICY"),
        Statement::DropExtension(_) => (K::Drop, "DROP EXTENSION"),
        Statement::DropTrigger(_) => (K::Drop, "DROP TRIGGER"),
        Statement::DropOperator(_) => (K::Drop, "DROP OPERATOR"),
        Statement::DropOperatorFamily(_) => (K::Drop, "DROP OPERATOR FAMILY"),
        Statement::DropOperatorClass(_) => (K::Drop, "DROP OPERATOR CLASS"),
        Statement::Truncate(_) => (K::Truncate, "TRUNCATE"),
        Statement::Grant(_) => (K::Grant, "GRANT"),
        Statement::Revoke(_) => (K::Grant, "REVOKE"),
        Statement::Deny(_) => (K::Grant, "DENY"),
        Statement::Set(set) => (K::Set, set_command(set)),
        Statement::Reset(reset) => (K::Set, reset_command(&reset.reset)),
        Statement::Discard { .. } => (K::Set, "DISCARD"),
        Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCharset(_)
        | Statement::ShowObjects(_)
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. } => (K::Show, "SHOW"),
        Statement::StartTransaction { begin: true, .. } => (K::Transaction, "BEGIN"),
        Statement::StartTransaction { .. } => (K::Transaction, "START TRANSACTION"),
        Statement::Commit { .. } => (K::Transaction, "COMMIT"),
        Statement::Rollback { .. } => (K::Transaction, "ROLLBACK"),
        Statement::Savepoint { .. } => (K::Transaction, "SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => (K::Transaction, "RELEASE"),
        Statement::Prepare { .. } => (K::Prepare, "PREPARE"),
        Statement::Execute { .. } => (K::Execute, "EXECUTE"),
        Statement::Deallocate { .. } => (K::Deallocate, "DEALLOCATE"),
        Statement::Declare { .. } => (K::Declare, "DECLARE CURSOR"),
        Statement::Fetch { .. } => (K::Fetch, "FETCH"),
        Statement::Close { .. } => (K::ClosePortal, "CLOSE"),
        Statement::Call(_) => (K::Call, "CALL"),
        Statement::Explain { .. } => (K::Explain, "EXPLAIN"),
        Statement::LISTEN { .. } => (K::Listen, "LISTEN"),
        Statement::UNLISTEN { .. } => (K::Listen, "UNLISTEN"),
        Statement::NOTIFY { .. } => (K::Notify, "NOTIFY"),
        Statement::Vacuum(_) => (K::Vacuum, "VACUUM"),
        Statement::Analyze(_) => (K::Vacuum, "ANALYZE"),
        other => return (K::Other, leading_keywords(other)),
    };
    (kind, command.to_owned())
}

/// Does the query's first SELECT have INTO (the only place PostgreSQL allows it)?
fn select_into(mut body: &SetExpr) -> bool {
    loop {
        match body {
            SetExpr::Select(select) => return select.into.is_some(),
            SetExpr::Query(query) => body = &query.body,
            SetExpr::SetOperation { left, .. } => body = left,
            _ => return false,
        }
    }
}

fn set_command(set: &Set) -> &'static str {
    match set {
        Set::SetRole { .. } => "SET ROLE",
        Set::SetSessionAuthorization(_) => "SET SESSION AUTHORIZATION",
        Set::SetTransaction { .. } => "SET TRANSACTION",
        Set::SingleAssignment { variable, .. } => match names::function(variable).as_str() {
            "role" => "SET ROLE",
            "session_authorization" => "SET SESSION AUTHORIZATION",
            _ => "SET",
        },
        _ => "SET",
    }
}

fn reset_command(reset: &Reset) -> &'static str {
    match reset {
        Reset::ConfigurationParameter(name) => match names::function(name).as_str() {
            "role" => "RESET ROLE",
            "session_authorization" => "RESET SESSION AUTHORIZATION",
            _ => "RESET",
        },
        Reset::SessionAuthorization => "RESET SESSION AUTHORIZATION",
        Reset::ALL => "RESET",
    }
}

/// The statement's first words, when they are keywords (never a name or a value).
fn leading_keywords(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take(2)
        .take_while(|word| is_keyword(word))
        .collect();
    if words.is_empty() {
        "UNKNOWN".to_owned()
    } else {
        words.join(" ")
    }
}

fn is_keyword(word: &str) -> bool {
    word.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        && matches!(Token::make_keyword(word), Token::Word(w) if w.keyword != Keyword::NoKeyword)
}
