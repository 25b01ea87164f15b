//! Settings whose values may come from classified data in this session: set by `set_config`
//! from a statement that reads classified data, or by code Tollgate cannot read (`DO`,
//! `CALL`, unparsed statements, functions it does not know). Reading such a setting back
//! (`SHOW`) is masked, and so is the server's own report of it (`ParameterStatus`) where the
//! value is free text. A setting stays tainted for the rest of the session.
//!
//! Such code may also have stored a value in a setting later sessions inherit (`ALTER ROLE |
//! DATABASE | SYSTEM ... SET`). Once it ran on a target (the derived store keeps that across
//! restarts), every setting a session did not give in its own startup packet is tainted from
//! its first message, on every session of that target, until an admin forgets the mark.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

/// What a masked `ParameterStatus` value becomes.
pub const MASKED_SETTING: &str = "[masked by Tollgate]";

/// Reported parameters the server only accepts from a fixed set or in a fixed form (an
/// encoding, a date style, a time zone, a role that exists, on/off, a number): they cannot
/// carry a copied value. Any other reported parameter is free text.
/// (`TimeZone` is not among them: a POSIX zone such as `<123456789>5` carries nine digits;
/// `session_authorization` names a role, and a role's name is free text.)
const VALIDATED_REPORTS: [&str; 11] = [
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "integer_datetimes",
    "server_version",
    "server_encoding",
    "is_superuser",
    "standard_conforming_strings",
    "in_hot_standby",
    "default_transaction_read_only",
    "scram_iterations",
];

#[derive(Debug, Default)]
pub struct TaintedSettings {
    /// Every setting (code Tollgate cannot read ran, or `set_config` of a computed name).
    all: AtomicBool,
    names: Mutex<HashSet<String>>,
    /// The target's mark: settings inherited from the server may hold classified values.
    inherited: Option<Arc<AtomicBool>>,
    /// Settings the client gave at startup (lower-case), which override inherited ones.
    from_client: HashSet<String>,
}

impl TaintedSettings {
    /// A session's settings on a target whose inherited settings are marked by `inherited`.
    pub fn new(inherited: Arc<AtomicBool>, from_client: HashSet<String>) -> Self {
        Self {
            inherited: Some(inherited),
            from_client,
            ..Self::default()
        }
    }

    fn inherits_tainted(&self) -> bool {
        self.inherited
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Acquire))
    }

    /// `name` (lower-case), or every setting when None.
    pub fn taint(&self, name: Option<&str>) {
        match name {
            Some(name) => {
                let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
                names.insert(name.to_owned());
            }
            None => self.all.store(true, Ordering::Release),
        }
    }

    pub fn is_tainted(&self, name: &str) -> bool {
        if self.all.load(Ordering::Acquire) {
            return true;
        }
        let name = name.to_ascii_lowercase();
        if self.inherits_tainted() && !self.from_client.contains(&name) {
            return true;
        }
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        names.contains(&name)
    }

    /// Whether any setting is.
    pub fn any(&self) -> bool {
        self.all.load(Ordering::Acquire)
            || self.inherits_tainted()
            || !self
                .names
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }

    /// Whether the server's report of this parameter must be masked.
    pub fn masks_report(&self, name: &str, value: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let validated =
            VALIDATED_REPORTS.contains(&name.as_str()) || name == "timezone" && is_zone_name(value);
        !validated && self.is_tainted(&name)
    }
}

/// A time zone by its name (`Europe/Paris`, `UTC`, `Etc/GMT+5`, `EST5EDT`): one of a few
/// hundred the server knows, so a choice among them, not a copied value. A POSIX spec with
/// free text or numbers (`<123456789>5`) is not one.
fn is_zone_name(value: &str) -> bool {
    let named = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphabetic() || c == '_' || c == '-')
    };
    let etc_offset = value
        .strip_prefix("Etc/GMT")
        .is_some_and(|o| o.is_empty() || is_small_offset(o));
    let us_rule = match value.as_bytes() {
        [a @ .., digit, b, c, d] if a.len() == 3 => {
            digit.is_ascii_digit()
                && [a, &[*b, *c, *d]]
                    .concat()
                    .iter()
                    .all(u8::is_ascii_uppercase)
        }
        _ => false,
    };
    etc_offset || us_rule || value.split('/').all(named)
}

/// `+5`, `-14`: a whole-hour offset.
fn is_small_offset(offset: &str) -> bool {
    let digits = offset.trim_start_matches(['+', '-']);
    offset.len() == digits.len() + 1
        && (1..=2).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };

    use super::TaintedSettings;

    #[test]
    fn reports_of_free_text_settings_are_masked_once_tainted() {
        let settings = TaintedSettings::default();
        assert!(!settings.masks_report("application_name", "psql"));
        settings.taint(Some("application_name"));
        assert!(settings.masks_report("Application_Name", "123-45-6789"));
        assert!(!settings.masks_report("client_encoding", "UTF8"));
        settings.taint(None);
        assert!(settings.masks_report("my.custom", "x"));
        assert!(!settings.masks_report("TimeZone", "Europe/Paris"));
        assert!(!settings.masks_report("TimeZone", "Etc/GMT+5"));
        assert!(!settings.masks_report("TimeZone", "EST5EDT"));
        assert!(
            settings.masks_report("TimeZone", "<123456789>5"),
            "a POSIX zone carries digits"
        );
        assert!(settings.masks_report("TimeZone", "Etc/GMT+123456789"));
        assert!(settings.masks_report("session_authorization", "123-45-6789"));
    }

    #[test]
    fn inherited_settings_are_tainted_while_the_target_is_marked_except_the_clients_own() {
        let mark = Arc::new(AtomicBool::new(false));
        let settings = TaintedSettings::new(mark.clone(), ["application_name".to_owned()].into());
        assert!(!settings.any());
        assert!(!settings.masks_report("my.custom", "x"));
        mark.store(true, Ordering::Release);
        assert!(settings.any());
        assert!(settings.is_tainted("My.Custom"));
        assert!(settings.masks_report("search_path", "public"));
        assert!(
            !settings.masks_report("application_name", "psql"),
            "the client's startup value overrides what the server inherits"
        );
        settings.taint(None);
        assert!(settings.masks_report("application_name", "psql"));
        mark.store(false, Ordering::Release);
        assert!(
            settings.is_tainted("my.custom"),
            "taint stays for the session"
        );
    }
}
