//! Expression and clause forms: window frames, `VARIADIC` arguments, `WHERE CURRENT OF`,
//! `BETWEEN SYMMETRIC`, `ISNULL`, `GROUP BY DISTINCT` and nested grouping sets,
//! `SUBSTRING(... SIMILAR ...)` and `(expr).*`.

use sqlparser::tokenizer::Token;

use super::{keyword, Forms};

/// Words that end a SELECT list item.
const AFTER_ITEM: &[&str] = &[
    "from",
    "into",
    "where",
    "group",
    "having",
    "window",
    "order",
    "limit",
    "offset",
    "fetch",
    "for",
    "union",
    "intersect",
    "except",
];

impl Forms {
    /// A window frame's `EXCLUDE CURRENT ROW | GROUP | TIES | NO OTHERS`: which rows of the
    /// frame are aggregated, not where they come from.
    pub(super) fn frame_exclusions(&mut self) {
        for n in 1..self.len() {
            let after_bound = self.any_word(n - 1, &["preceding", "following", "row"]);
            if !after_bound || !self.word(n, "exclude") {
                continue;
            }
            let length = if self.word(n + 1, "current") && self.word(n + 2, "row")
                || self.word(n + 1, "no") && self.word(n + 2, "others")
            {
                3
            } else if self.any_word(n + 1, &["group", "ties"]) {
                2
            } else {
                continue;
            };
            self.remove(n, n + length);
        }
    }

    /// `RANGE BETWEEN '1 year'::interval PRECEDING`: the parser reads a bound that starts
    /// with a string as an interval literal alone; in parentheses it reads the expression.
    pub(super) fn frame_bounds(&mut self) {
        for n in 1..self.len() {
            if !self.any_word(n, &["preceding", "following"]) {
                continue;
            }
            let depth = self.depth[n];
            let start = (0..n)
                .rev()
                .take_while(|&m| self.depth[m] >= depth)
                .find(|&m| {
                    self.depth[m] == depth
                        && self.any_word(m, &["between", "and", "rows", "range", "groups"])
                });
            let Some(start) = start else { continue };
            if start + 1 < n && self.is_string(start + 1) {
                self.insert_before(start + 1, vec![Token::LParen]);
                self.insert_after(n - 1, vec![Token::RParen]);
            }
        }
    }

    /// `VARIADIC` before a call's last argument: the same argument, passed as an array.
    pub(super) fn variadic(&mut self) {
        // In a routine's parameter list VARIADIC is a parameter mode, left to the parser.
        let routine = self.first_word("create")
            && (1..4).any(|n| self.any_word(n, &["function", "procedure", "aggregate"]));
        if routine {
            return;
        }
        for n in 1..self.len() {
            let after = self
                .at(n - 1)
                .is_some_and(|t| matches!(t.token, Token::LParen | Token::Comma));
            if after && self.word(n, "variadic") {
                self.remove(n, n + 1);
            }
        }
    }

    /// `WHERE CURRENT OF cursor` of UPDATE and DELETE becomes `WHERE TRUE`: the cursor only
    /// picks the row, no value flows from it, and the statement still has a WHERE.
    pub(super) fn current_of(&mut self) {
        if !(self.first_word("update") || self.first_word("delete")) {
            return;
        }
        for n in 0..self.len() {
            let shape = self.depth[n] == 0
                && self.word(n, "where")
                && self.word(n + 1, "current")
                && self.word(n + 2, "of")
                && self.is_name(n + 3);
            let ends = self.at(n + 4).is_none() || self.word(n + 4, "returning");
            if shape && ends {
                self.remove(n + 2, n + 4);
                self.replace(n + 1, vec![keyword("TRUE")]);
            }
        }
    }

    /// `BETWEEN SYMMETRIC a AND b` compares with the same operands in either order.
    pub(super) fn between_symmetric(&mut self) {
        for n in 1..self.len() {
            if self.word(n - 1, "between") && self.any_word(n, &["symmetric", "asymmetric"]) {
                self.remove(n, n + 1);
            }
        }
    }

    /// Postfix `x ISNULL` is `x IS NULL` (`NOTNULL` the parser reads); `AS isnull` and
    /// `t.isnull` are names.
    pub(super) fn isnull(&mut self) {
        for n in 1..self.len() {
            let name = self.word(n - 1, "as") || self.is(n - 1, &Token::Period);
            if self.word(n, "isnull") && !name && !self.is(n + 1, &Token::LParen) {
                self.replace(n, vec![keyword("IS"), keyword("NULL")]);
            }
        }
    }

    /// `GROUP BY DISTINCT|ALL sets` (whether duplicate grouping sets are dropped) and
    /// grouping sets nested in `GROUPING SETS (...)`: the same columns group either way,
    /// so the inner `GROUPING SETS`, `ROLLUP` and `CUBE` words are dropped, leaving their
    /// lists.
    pub(super) fn group_by(&mut self) {
        for n in 2..self.len() {
            let quantified = self.word(n - 2, "group")
                && self.word(n - 1, "by")
                && self.any_word(n, &["distinct", "all"])
                && self.at(n + 1).is_some()
                && !self.is(n + 1, &Token::RParen)
                && !self.any_word(n + 1, AFTER_ITEM);
            if quantified {
                self.remove(n, n + 1);
            }
        }
        let mut n = 0;
        while n + 2 < self.len() {
            if !(self.word(n, "grouping") && self.word(n + 1, "sets")) {
                n += 1;
                continue;
            }
            let Some(close) = self.closing(n + 2) else {
                return;
            };
            for m in n + 3..close {
                if self.word(m, "grouping")
                    && self.word(m + 1, "sets")
                    && self.is(m + 2, &Token::LParen)
                {
                    self.remove(m, m + 2);
                } else if self.any_word(m, &["rollup", "cube"]) && self.is(m + 1, &Token::LParen) {
                    self.remove(m, m + 1);
                }
            }
            n = close;
        }
    }

    /// `SUBSTRING(a SIMILAR b ESCAPE c)` reads the same operands as
    /// `SUBSTRING(a FROM b FOR c)`.
    pub(super) fn substring_similar(&mut self) {
        for n in 0..self.len() {
            if !(self.word(n, "substring") && self.is(n + 1, &Token::LParen)) {
                continue;
            }
            let level = self.level_inside(n + 1);
            let similar: Vec<usize> = level
                .iter()
                .copied()
                .filter(|&m| self.word(m, "similar"))
                .collect();
            let escape: Vec<usize> = level
                .iter()
                .copied()
                .filter(|&m| self.word(m, "escape"))
                .collect();
            if let ([similar], [escape]) = (similar.as_slice(), escape.as_slice()) {
                if similar < escape {
                    self.replace(*similar, vec![keyword("FROM")]);
                    self.replace(*escape, vec![keyword("FOR")]);
                }
            }
        }
    }

    /// `SELECT (expr).*` expands a composite value into its fields, how many the text does
    /// not say. Written as the item `(expr) AS "*"`, which the analyzer reads as columns of
    /// unknown number and lineage carrying what `expr` reads (see `lineage::placeholder`).
    pub(super) fn field_star(&mut self) {
        for n in 1..self.len() {
            let shape = self.is(n - 1, &Token::RParen)
                && self.is(n, &Token::Period)
                && self.is(n + 1, &Token::Mul);
            if !shape {
                continue;
            }
            let open = (0..n - 1)
                .rev()
                .find(|&m| self.depth[m] == self.depth[n - 1] && self.is(m, &Token::LParen));
            let Some(open) = open else { continue };
            let starts_item = open > 0
                && (self.is(open - 1, &Token::Comma)
                    || self.any_word(open - 1, &["select", "distinct", "all", "returning"]));
            let ends_item = self.at(n + 2).is_none()
                || self.is(n + 2, &Token::Comma)
                || self.is(n + 2, &Token::RParen)
                || self.any_word(n + 2, AFTER_ITEM);
            if starts_item && ends_item {
                self.replace(n, vec![keyword("AS")]);
                self.replace(n + 1, vec![Token::make_word("*", Some('"'))]);
            }
        }
    }
}
