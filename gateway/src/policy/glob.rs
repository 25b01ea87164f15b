//! Shell-style patterns for names and paths: `*` matches any run of characters (including
//! `/`), `?` one character; everything else matches itself.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Self {
            pattern: pattern.chars().collect(),
        }
    }

    /// For `schema.table` patterns, matched against a table name whose schema is not known:
    /// Some(true) if every schema matches (`*.t`), Some(false) if some schema might, None if
    /// no schema could.
    pub fn table_part(&self, table: &str) -> Option<bool> {
        let pattern: String = self.pattern.iter().collect();
        let (schema, table_pattern) = pattern.split_once('.').unwrap_or(("*", &pattern));
        Glob::new(table_pattern)
            .matches(table)
            .then_some(schema == "*")
    }

    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        // Iterative matching with backtracking to the last `*`: linear in practice, never
        // exponential.
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(&c) if c == '?' || c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        p = star_p + 1;
                        t = star_t + 1;
                        star = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        self.pattern[p..].iter().all(|&c| c == '*')
    }
}

/// Any of the patterns matches.
pub fn any_matches(globs: &[Glob], text: &str) -> bool {
    globs.iter().any(|glob| glob.matches(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_documented() {
        let cases = [
            ("/agents/*", "/agents/claude", true),
            ("/agents/*", "/agents/team/claude", true),
            ("/agents/*", "/agentsx", false),
            ("/usr/bin/python3*", "/usr/bin/python3.11", true),
            ("/usr/bin/python3*", "/usr/local/bin/python3", false),
            ("psql", "psql", true),
            ("psql", "psqlx", false),
            ("ps?l", "psql", true),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("dblink*", "dblink_exec", true),
            ("*.patients", "public.patients", true),
            ("public.*", "clinic.patients", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                expected,
                "{pattern:?} against {text:?}"
            );
        }
    }
}
