//! COPY: which way, to or from where, which relation or query, in which format.

use sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget};

use super::{
    super::{
        lineage::{column_of, Walker},
        names, CopyDirection, CopyEndpoint, CopyFacts, CopyFormat, CopyTextOptions, OutputItem,
    },
    SqlError, StatementFacts,
};

/// The parts of a parsed `Statement::Copy`.
pub(super) struct Copy<'a> {
    pub source: &'a CopySource,
    pub to: bool,
    pub target: &'a CopyTarget,
    pub options: &'a [CopyOption],
    pub legacy_options: &'a [CopyLegacyOption],
}

impl Copy<'_> {
    pub fn describe(
        &self,
        walker: &mut Walker,
        facts: &mut StatementFacts,
    ) -> Result<(), SqlError> {
        let format = self.format()?;
        let endpoint = match self.target {
            CopyTarget::Stdin | CopyTarget::Stdout => CopyEndpoint::Client,
            CopyTarget::File { filename } => CopyEndpoint::File(filename.clone()),
            CopyTarget::Program { command } => CopyEndpoint::Program(command.clone()),
        };
        let (relation, columns) = match self.source {
            CopySource::Table {
                table_name,
                columns,
            } => {
                let relation = names::relation(table_name);
                let columns: Vec<String> = columns.iter().map(names::ident).collect();
                if self.to {
                    walker.effects.read(relation.clone());
                    facts.outputs = if columns.is_empty() {
                        vec![OutputItem::Expand(relation.clone())]
                    } else {
                        columns
                            .iter()
                            .map(|column| OutputItem::Column {
                                name: column.clone(),
                                lineage: column_of(vec![relation.clone()], column),
                            })
                            .collect()
                    };
                } else {
                    walker.effects.write(relation.clone());
                }
                (Some(relation), columns)
            }
            CopySource::Query(query) => {
                facts.outputs = walker.query(query, None)?;
                (None, Vec::new())
            }
        };
        facts.copy = Some(CopyFacts {
            direction: if self.to {
                CopyDirection::To
            } else {
                CopyDirection::From
            },
            endpoint,
            relation,
            columns,
            format,
            text: self.text_options(),
        });
        Ok(())
    }

    /// `(FORMAT x)` or the legacy `CSV` / `BINARY` words; the last one given wins. A format
    /// this module does not know is refused rather than guessed.
    fn format(&self) -> Result<CopyFormat, SqlError> {
        let mut format = CopyFormat::Text;
        for option in self.options {
            if let CopyOption::Format(name) = option {
                format = match name.value.to_ascii_lowercase().as_str() {
                    "text" => CopyFormat::Text,
                    "csv" => CopyFormat::Csv,
                    "binary" => CopyFormat::Binary,
                    _ => return Err(unknown_format()),
                };
            }
        }
        for option in self.legacy_options {
            format = match option {
                CopyLegacyOption::Binary => CopyFormat::Binary,
                CopyLegacyOption::Csv(_) => CopyFormat::Csv,
                CopyLegacyOption::Json(_)
                | CopyLegacyOption::Parquet
                | CopyLegacyOption::FixedWidth(_) => return Err(unknown_format()),
                _ => format,
            };
        }
        Ok(format)
    }

    /// Delimiter, NULL string, quote, escape and header, new and legacy syntax alike; the
    /// last one given wins, as in PostgreSQL.
    fn text_options(&self) -> CopyTextOptions {
        let mut text = CopyTextOptions::default();
        for option in self.options {
            match option {
                CopyOption::Delimiter(c) => text.delimiter = Some(*c),
                CopyOption::Null(s) => text.null = Some(s.clone()),
                CopyOption::Quote(c) => text.quote = Some(*c),
                CopyOption::Escape(c) => text.escape = Some(*c),
                CopyOption::Header(on) => text.header = *on,
                _ => {}
            }
        }
        for option in self.legacy_options {
            match option {
                CopyLegacyOption::Delimiter(c) => text.delimiter = Some(*c),
                CopyLegacyOption::Null(s) => text.null = Some(s.clone()),
                CopyLegacyOption::Header => text.header = true,
                CopyLegacyOption::Csv(csv) => {
                    for option in csv {
                        match option {
                            CopyLegacyCsvOption::Header => text.header = true,
                            CopyLegacyCsvOption::Quote(c) => text.quote = Some(*c),
                            CopyLegacyCsvOption::Escape(c) => text.escape = Some(*c),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        text
    }
}

fn unknown_format() -> SqlError {
    SqlError::Unreadable("a COPY format that is not text, csv or binary".to_owned())
}
