//! Names as PostgreSQL reads them: unquoted identifiers fold to lower case (ASCII only, as in
//! a UTF-8 database) and every identifier is cut to NAMEDATALEN - 1 bytes, so two spellings the
//! server takes as one name compare equal here too.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use super::RelationName;

/// PostgreSQL truncates longer identifiers (with a notice) before looking them up.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// One identifier as the server compares it.
pub(super) fn ident(ident: &Ident) -> String {
    let mut name = match ident.quote_style {
        None => ident.value.to_ascii_lowercase(),
        Some(_) => ident.value.clone(),
    };
    truncate(&mut name);
    name
}

/// The parts of a dotted name, each normalized.
pub(super) fn parts(name: &ObjectName) -> Vec<String> {
    name.0.iter().map(part).collect()
}

fn part(part: &ObjectNamePart) -> String {
    match part {
        ObjectNamePart::Identifier(id) => ident(id),
        // Not PostgreSQL syntax (Snowflake's IDENTIFIER(...)); keep something that never
        // matches a real name rather than guessing.
        ObjectNamePart::Function(func) => format!("{}()", ident(&func.name)),
    }
}

/// A relation name: the last part is the relation, the one before it the schema. A leading
/// database part (`db.schema.table`) can only name the current database, so it is dropped.
pub(super) fn relation(name: &ObjectName) -> RelationName {
    relation_from_parts(parts(name))
}

pub(super) fn relation_from_parts(mut parts: Vec<String>) -> RelationName {
    let name = parts.pop().unwrap_or_default();
    RelationName {
        schema: parts.pop(),
        name,
    }
}

/// A name that is an identifier, not an object (a role, an extension, a cursor).
pub(super) fn simple(name: &Ident) -> RelationName {
    RelationName {
        schema: None,
        name: ident(name),
    }
}

/// A function name, lower-cased and qualified as written: policies list functions in
/// lower case, and a quoted upper-case name can only be a user's own function.
pub(super) fn function(name: &ObjectName) -> String {
    let mut joined = parts(name).join(".");
    joined.make_ascii_lowercase();
    joined
}

/// The function's own name without a `pg_catalog.` qualifier, or None when it is qualified
/// with another schema (and so may be anybody's function).
pub(super) fn builtin_name(qualified: &str) -> Option<&str> {
    match qualified.rsplit_once('.') {
        None => Some(qualified),
        Some(("pg_catalog", name)) => Some(name),
        Some(_) => None,
    }
}

fn truncate(name: &mut String) {
    if name.len() <= MAX_IDENTIFIER_BYTES {
        return;
    }
    let mut end = MAX_IDENTIFIER_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
}
