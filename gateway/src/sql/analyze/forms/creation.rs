//! Options of CREATE TABLE ... AS, CREATE [MATERIALIZED] VIEW and CREATE FUNCTION that only
//! say how or where an object is kept (access method, tablespace, what happens at commit,
//! check options, a routine's cost and leakproofness), and two spellings the parser lacks:
//! a CREATE TABLE AS column list without types, and `CREATE RECURSIVE VIEW`.

use sqlparser::tokenizer::Token;

use super::{keyword, Forms};

/// A routine parameter's mode, which PostgreSQL also accepts after the parameter's name.
const MODES: &[&str] = &["in", "out", "inout", "variadic"];

impl Forms {
    /// `WITH [NO] DATA` ending `CREATE TABLE ... AS` / `CREATE MATERIALIZED VIEW`: without
    /// it the rows are stored, so the facts cover more, not less.
    pub(super) fn with_data(&mut self) {
        let len = self.len();
        if !self.first_word("create") || len < 3 {
            return;
        }
        if self.word(len - 3, "with") && self.word(len - 2, "no") && self.word(len - 1, "data") {
            self.remove(len - 3, len);
        } else if self.word(len - 2, "with") && self.word(len - 1, "data") {
            self.remove(len - 2, len);
        }
    }

    /// The index of `VIEW` in `CREATE [OR REPLACE] [TEMP] [RECURSIVE] VIEW`.
    fn view_word(&self) -> Option<usize> {
        let mut n = self.after_create()?;
        while self.any_word(n, &["temp", "temporary", "recursive"]) {
            n += 1;
        }
        self.word(n, "view").then_some(n)
    }

    /// `WITH [LOCAL | CASCADED] CHECK OPTION` ending a view: a check on later writes
    /// through the view.
    pub(super) fn check_option(&mut self) {
        if self.view_word().is_none() {
            return;
        }
        let len = self.len();
        if len < 4 || !(self.word(len - 2, "check") && self.word(len - 1, "option")) {
            return;
        }
        if self.word(len - 3, "with") && self.depth[len - 3] == 0 {
            self.remove(len - 3, len);
        } else if self.any_word(len - 3, &["local", "cascaded"])
            && self.word(len - 4, "with")
            && self.depth[len - 4] == 0
        {
            self.remove(len - 4, len);
        }
    }

    /// `CREATE [TEMP] TABLE t [(a, b)] [USING am] [WITHOUT OIDS] [ON COMMIT ...]
    /// [TABLESPACE ts] AS query`: the options go; each name of the column list gets a
    /// placeholder type, so the parser reads the names the new table's columns take.
    pub(super) fn table_as(&mut self) {
        let Some(mut n) = self.after_create() else {
            return;
        };
        while self.any_word(n, &["global", "local", "temp", "temporary", "unlogged"]) {
            n += 1;
        }
        if !self.word(n, "table") {
            return;
        }
        n += 1;
        if self.word(n, "if") && self.word(n + 1, "not") && self.word(n + 2, "exists") {
            n += 3;
        }
        let Some(mut n) = self.after_name(n) else {
            return;
        };
        let mut names = Vec::new();
        if let Some(close) = self.closing(n) {
            let level = self.level_inside(n);
            let only_names = close > n + 1
                && level.len() == close - n - 1
                && level.iter().enumerate().all(|(k, &m)| {
                    if k % 2 == 0 {
                        self.is_name(m)
                    } else {
                        self.is(m, &Token::Comma)
                    }
                })
                && level.len() % 2 == 1;
            if !only_names {
                return;
            }
            names = level.into_iter().step_by(2).collect();
            n = close + 1;
        }
        let Some(options) = self.storage_options(n) else {
            return;
        };
        for name in names {
            self.insert_after(name, vec![Token::make_word("text", None)]);
        }
        for (from, to) in options {
            self.remove(from, to);
        }
    }

    /// `CREATE MATERIALIZED VIEW m [(a, b)] [USING am] [WITH (...)] [TABLESPACE ts] AS`.
    pub(super) fn materialized_view_options(&mut self) {
        let Some(n) = self.after_create() else {
            return;
        };
        if !(self.word(n, "materialized") && self.word(n + 1, "view")) {
            return;
        }
        let mut n = n + 2;
        if self.word(n, "if") && self.word(n + 1, "not") && self.word(n + 2, "exists") {
            n += 3;
        }
        let Some(mut n) = self.after_name(n) else {
            return;
        };
        if let Some(close) = self.closing(n) {
            n = close + 1;
        }
        if let Some(options) = self.storage_options(n) {
            for (from, to) in options {
                self.remove(from, to);
            }
        }
    }

    /// The storage options from `n` up to `AS`, as ranges to remove; None when something
    /// else comes first.
    fn storage_options(&self, mut n: usize) -> Option<Vec<(usize, usize)>> {
        let mut remove = Vec::new();
        loop {
            if self.word(n, "as") {
                return Some(remove);
            }
            let two_words = self.any_word(n, &["using", "tablespace"]) && self.is_name(n + 1)
                || self.word(n, "without") && self.word(n + 1, "oids");
            let length = if two_words {
                2
            } else if self.word(n, "on") && self.word(n + 1, "commit") && self.word(n + 2, "drop") {
                3
            } else if self.word(n, "on")
                && self.word(n + 1, "commit")
                && self.any_word(n + 2, &["delete", "preserve"])
                && self.word(n + 3, "rows")
            {
                4
            } else if self.word(n, "with") && self.is(n + 1, &Token::LParen) {
                // Storage parameters, which the parser reads.
                n = self.closing(n + 1)? + 1;
                continue;
            } else {
                return None;
            };
            remove.push((n, n + length));
            n += length;
        }
    }

    /// `CREATE RECURSIVE VIEW v (a, b) AS q` is PostgreSQL's shorthand for
    /// `CREATE VIEW v AS WITH RECURSIVE v (a, b) AS (q) SELECT * FROM v`, written so.
    pub(super) fn recursive_view(&mut self) {
        let Some(view) = self.view_word() else {
            return;
        };
        let Some(recursive) = (0..view).find(|&m| self.word(m, "recursive")) else {
            return;
        };
        let Some(after) = self.after_name(view + 1) else {
            return;
        };
        let Some(close) = self.closing(after) else {
            return;
        };
        if !self.word(close + 1, "as") || self.len() <= close + 2 {
            return;
        }
        // The view's own name, unqualified, names the recursive query.
        let Some(name) = self.at(after - 1).map(|t| t.token.clone()) else {
            return;
        };
        let columns: Vec<Token> = (after..=close)
            .filter_map(|m| self.at(m).map(|t| t.token.clone()))
            .collect();
        self.remove(recursive, recursive + 1);
        let mut head = vec![keyword("WITH"), keyword("RECURSIVE"), name.clone()];
        head.extend(columns);
        head.extend([keyword("AS"), Token::LParen]);
        self.insert_after(close + 1, head);
        let last = self.len() - 1;
        self.insert_after(
            last,
            vec![
                Token::RParen,
                keyword("SELECT"),
                Token::Mul,
                keyword("FROM"),
                name,
            ],
        );
    }

    /// CREATE FUNCTION / PROCEDURE: `name OUT type` parameters (the mode after the name)
    /// are respelled `OUT name type`, and `COST n`, `ROWS n`, `[NOT] LEAKPROOF` and
    /// `WINDOW` (planner hints and the kind of routine, nothing the routine runs) go.
    pub(super) fn routine_options(&mut self) {
        let Some(n) = self.after_create() else {
            return;
        };
        if !self.any_word(n, &["function", "procedure"]) {
            return;
        }
        let Some(open) = self.after_name(n + 1) else {
            return;
        };
        let Some(close) = self.closing(open) else {
            return;
        };
        let level = self.level_inside(open);
        let mut starts = vec![open + 1];
        starts.extend(
            level
                .iter()
                .filter(|&&m| self.is(m, &Token::Comma))
                .map(|m| m + 1),
        );
        for start in starts {
            let named_then_mode = self.is_name(start)
                && !self.any_word(start, MODES)
                && self.any_word(start + 1, MODES)
                && start + 2 < close
                && !self.is(start + 2, &Token::Comma);
            if named_then_mode {
                let (Some(name), Some(mode)) = (self.at(start), self.at(start + 1)) else {
                    continue;
                };
                let (name, mode) = (name.token.clone(), mode.token.clone());
                self.replace(start, vec![mode]);
                self.replace(start + 1, vec![name]);
            }
        }
        let mut m = close + 1;
        // Options end where a body in SQL starts.
        while m < self.len() && !self.any_word(m, &["begin", "return"]) {
            let number = self
                .at(m + 1)
                .is_some_and(|t| matches!(t.token, Token::Number(..)));
            let two_words = self.any_word(m, &["cost", "rows"]) && number
                || self.word(m, "not") && self.word(m + 1, "leakproof");
            if self.depth[m] == 0 && two_words {
                self.remove(m, m + 2);
                m += 2;
            } else if self.depth[m] == 0 && self.any_word(m, &["leakproof", "window"]) {
                self.remove(m, m + 1);
                m += 1;
            } else {
                m += 1;
            }
        }
    }
}
