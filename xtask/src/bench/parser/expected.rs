//! Which statements the server rejected, read from the regression test's expected output.
//! pg_regress runs psql with `-a`, so the `.out` file holds every line of the script (copy
//! data aside) in order, each statement's output after the line that ended it. Script lines
//! are matched to output lines in order (blank lines are not anchors), and a statement is
//! rejected when an `ERROR:` line follows the line that ended it, before the next matched
//! script line. "current transaction is aborted" is not a verdict on the statement (the
//! server did not read it), so it does not count.

use super::psql::Statement;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Rejected,
    /// The output cannot be matched to the statement (echo off, several statements on one
    /// line with only some of them failing, no expected file).
    Unknown,
}

pub fn verdicts(
    script: &str,
    echoed: &[bool],
    output: &str,
    statements: &[Statement],
) -> Vec<Verdict> {
    let script: Vec<&str> = script.lines().collect();
    let output: Vec<&str> = output.lines().collect();
    let mut anchors: Vec<Option<usize>> = vec![None; script.len()];
    let mut echo = true;
    let mut at = 0;
    for (index, line) in script.iter().enumerate() {
        // `\set ECHO none` stops the echo of the lines that follow.
        if let Some(value) = line.trim().strip_prefix("\\set ECHO ") {
            echo = value.trim() != "none";
        }
        if !echo || !echoed.get(index).copied().unwrap_or(true) || line.trim().is_empty() {
            continue;
        }
        if let Some(found) = output[at..].iter().position(|o| o == line) {
            anchors[index] = Some(at + found);
            at += found + 1;
        }
    }
    statements
        .iter()
        .map(|statement| {
            let last = statement.last_line - 1;
            let Some(start) = anchors.get(last).copied().flatten() else {
                return Verdict::Unknown;
            };
            let end = anchors[last + 1..]
                .iter()
                .find_map(|a| *a)
                .unwrap_or(output.len());
            let errors = output[start + 1..end]
                .iter()
                .filter(|line| {
                    line.starts_with("ERROR:") && !line.contains("current transaction is aborted")
                })
                .count();
            let sharing = statements
                .iter()
                .filter(|s| s.last_line == statement.last_line)
                .count();
            match errors {
                0 => Verdict::Accepted,
                _ if sharing == 1 || errors >= sharing => Verdict::Rejected,
                _ => Verdict::Unknown,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{super::psql::split, verdicts, Verdict};

    #[test]
    fn an_error_after_the_line_ending_a_statement_rejects_it() {
        let script = "SELECT 1;\n\nSELECT nope\n  FROM t;\nBEGIN;\nSELECT 1/0;\nSELECT 2;\n";
        let output = "SELECT 1;\n ?column? \n----------\n        1\n(1 row)\n\nSELECT nope\n  FROM t;\n\
                      ERROR:  relation \"t\" does not exist\nBEGIN;\nSELECT 1/0;\nERROR:  division by zero\n\
                      SELECT 2;\nERROR:  current transaction is aborted, commands ignored until end of transaction block\n";
        let (statements, echoed) = split(script);
        assert_eq!(
            verdicts(script, &echoed, output, &statements),
            [
                Verdict::Accepted,
                Verdict::Rejected,
                Verdict::Accepted,
                Verdict::Rejected,
                Verdict::Accepted,
            ]
        );
    }

    #[test]
    fn one_failure_among_statements_sharing_a_line_is_not_attributed() {
        let script = "SELECT 1; SELECT x;\n";
        let output = "SELECT 1; SELECT x;\n ?column? \n----------\n        1\n(1 row)\n\nERROR:  column \"x\" does not exist\n";
        let (statements, echoed) = split(script);
        assert_eq!(
            verdicts(script, &echoed, output, &statements),
            [Verdict::Unknown, Verdict::Unknown]
        );
    }
}
