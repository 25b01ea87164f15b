//! How each column of a result is masked: the origin the server reports for it and the
//! parser's lineage at its position, resolved to categories and then to the plan's method.

use pgwire::messages::{copy::CopyOutResponse, data::FieldDescription};

use super::{Masks, ResultError, ResultRule};
use crate::{
    audit::event::ClassifiedColumn,
    policy::{
        combine,
        mask::{oid, MaskMethod, ValueFormat},
        ResolvedColumn, Resolver,
    },
    postgres::masking::{ColumnMask, CopyFormatSpec, CopyMasker, MaskError},
    sql::{CopyFormat, CopyTextOptions},
};

/// Masks for the DataRows a RowDescription announces, and the classified columns among
/// them with what the agent gets of each (for the audit record).
pub fn row_masks(rule: &ResultRule, fields: &[FieldDescription]) -> (Masks, Vec<ClassifiedColumn>) {
    if !rule.mask_columns {
        return (Masks::None, Vec::new());
    }
    let resolver = Resolver {
        catalog: rule.context.catalog.as_deref(),
        classes: &rule.context.classes,
    };
    let parsed = aligned(rule, fields.len());
    let mut classified = Vec::new();
    let columns: Vec<Option<ColumnMask>> = fields
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let origin = resolver.origin(field.table_id as u32, field.column_id);
            let column = combine(origin, parsed.map(|p| &p[index]));
            let method = rule.plan.method_for(&column);
            classified.extend(classified_column(&field.name, &column, method));
            method.map(|method| ColumnMask {
                method,
                type_oid: field.type_id,
                // Only 0 and 1 exist; anything else is masked as binary (values become NULL
                // or a fixed text, never passed through).
                format: ValueFormat::from_code(field.format_code).unwrap_or(ValueFormat::Binary),
            })
        })
        .collect();
    let masks = if columns.iter().all(Option::is_none) {
        Masks::None
    } else {
        Masks::Rows(columns)
    };
    (masks, classified)
}

/// A result column that carries classified data (or data nobody can trace), with its mask;
/// None for a clean one.
pub fn classified_column(
    name: &str,
    column: &ResolvedColumn,
    method: Option<MaskMethod>,
) -> Option<ClassifiedColumn> {
    if method.is_none() && column.categories.is_empty() {
        return None;
    }
    let mut categories: Vec<String> = column.categories.iter().map(|c| c.to_string()).collect();
    if column.unknown {
        categories.push("(provenance unknown)".to_owned());
    }
    Some(ClassifiedColumn {
        column: crate::identity::printable(name),
        categories,
        mask: method.unwrap_or(MaskMethod::Clear).to_string(),
    })
}

/// The masker for a `COPY ... TO STDOUT` (no RowDescription: provenance is the parser's).
pub fn copy_masker(
    rule: &ResultRule,
    response: &CopyOutResponse,
) -> Result<(CopyMasker, Vec<ClassifiedColumn>), ResultError> {
    let count = usize::try_from(response.columns).unwrap_or(0);
    let parsed = aligned(rule, count);
    let binary = response.format == 1;
    let unknown = ResolvedColumn {
        unknown: true,
        ..Default::default()
    };
    let mut classified = Vec::new();
    let plan = (0..count)
        .map(|index| {
            let column = parsed.map_or(&unknown, |p| &p[index]);
            let method = rule.plan.method_for(column);
            classified.extend(classified_column(
                &format!("column {}", index + 1),
                column,
                method,
            ));
            method.map(|method| ColumnMask {
                method,
                // COPY announces no types: text and CSV values are masked as text; binary
                // values of unknown type become NULL.
                type_oid: if binary { 0 } else { oid::TEXT },
                format: if binary {
                    ValueFormat::Binary
                } else {
                    ValueFormat::Text
                },
            })
        })
        .collect();
    let spec = if binary {
        CopyFormatSpec::Binary
    } else {
        text_spec(rule.copy.as_ref().map(|c| (c.format, &c.text)))?
    };
    Ok((
        CopyMasker::new(spec, plan, rule.context.key.clone()),
        classified,
    ))
}

/// The parser's columns, when they line up with the result's.
fn aligned(rule: &ResultRule, count: usize) -> Option<&[ResolvedColumn]> {
    rule.parsed.as_deref().filter(|p| p.len() == count)
}

/// The text or CSV layout the statement asked for (without facts: text defaults; a wrong
/// guess fails to parse and ends the session rather than passing rows unmasked).
fn text_spec(copy: Option<(CopyFormat, &CopyTextOptions)>) -> Result<CopyFormatSpec, ResultError> {
    let byte = |c: Option<char>, default: u8| -> Result<u8, ResultError> {
        match c {
            None => Ok(default),
            Some(c) if c.is_ascii() => Ok(c as u8),
            Some(_) => {
                Err(MaskError::MalformedCopy("a COPY option that is not one ASCII byte").into())
            }
        }
    };
    let Some((format, options)) = copy else {
        return Ok(CopyFormatSpec::text());
    };
    Ok(match format {
        CopyFormat::Csv => {
            let quote = byte(options.quote, b'"')?;
            CopyFormatSpec::Csv {
                delimiter: byte(options.delimiter, b',')?,
                quote,
                escape: byte(options.escape, quote)?,
                null: options.null.clone().unwrap_or_default().into_bytes(),
            }
        }
        CopyFormat::Text | CopyFormat::Binary => CopyFormatSpec::Text {
            delimiter: byte(options.delimiter, b'\t')?,
            null: options
                .null
                .clone()
                .unwrap_or_else(|| "\\N".to_owned())
                .into_bytes(),
        },
    })
}
