//! COPY options the parser lacks: `HEADER MATCH` (the header line must name the columns:
//! still a header), legacy `FREEZE` (how loaded rows are stored) and the legacy leading
//! `COPY BINARY t` (the same format, written as the trailing legacy option).

use super::{keyword, Forms};

impl Forms {
    pub(super) fn copy_options(&mut self) {
        if !self.first_word("copy") {
            return;
        }
        for n in 1..self.len() {
            if self.depth[n] == 1 && self.word(n - 1, "header") && self.word(n, "match") {
                self.replace(n, vec![keyword("TRUE")]);
            }
            if self.depth[n] == 0 && self.word(n, "freeze") {
                self.remove(n, n + 1);
            }
        }
        self.leading_binary();
    }

    /// `COPY BINARY t [(a, b)] FROM|TO endpoint`, nothing after it.
    fn leading_binary(&mut self) {
        if !self.word(1, "binary") {
            return;
        }
        let Some(mut n) = self.after_name(2) else {
            return;
        };
        if let Some(close) = self.closing(n) {
            n = close + 1;
        }
        let endpoint = self.is_string(n + 1) || self.any_word(n + 1, &["stdin", "stdout"]);
        if self.any_word(n, &["from", "to"]) && endpoint && self.len() == n + 2 {
            self.remove(1, 2);
            self.insert_after(n + 1, vec![keyword("BINARY")]);
        }
    }
}
