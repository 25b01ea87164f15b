//! Settings whose values may come from classified data in this session: set by `set_config`
//! from a statement that reads classified data, or by code Tollgate cannot read (`DO`,
//! `CALL`, unparsed statements, functions it does not know). Reading such a setting back
//! (`SHOW`) is masked, and so is the server's own report of it (`ParameterStatus`) where the
//! value is free text. A setting stays tainted for the rest of the session.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
};

/// What a masked `ParameterStatus` value becomes.
pub const MASKED_SETTING: &str = "[masked by Tollgate]";

/// Reported parameters the server only accepts from a fixed set or in a fixed form (an
/// encoding, a date style, a time zone, a role that exists, on/off, a number): they cannot
/// carry a copied value. Any other reported parameter is free text.
const VALIDATED_REPORTS: [&str; 13] = [
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "timezone",
    "integer_datetimes",
    "server_version",
    "server_encoding",
    "is_superuser",
    "session_authorization",
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
}

impl TaintedSettings {
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
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        names.contains(&name.to_ascii_lowercase())
    }

    /// Whether any setting is.
    pub fn any(&self) -> bool {
        self.all.load(Ordering::Acquire)
            || !self
                .names
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }

    /// Whether the server's report of this parameter must be masked.
    pub fn masks_report(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        !VALIDATED_REPORTS.contains(&name.as_str()) && self.is_tainted(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::TaintedSettings;

    #[test]
    fn reports_of_free_text_settings_are_masked_once_tainted() {
        let settings = TaintedSettings::default();
        assert!(!settings.masks_report("application_name"));
        settings.taint(Some("application_name"));
        assert!(settings.masks_report("Application_Name"));
        assert!(!settings.masks_report("client_encoding"));
        settings.taint(None);
        assert!(settings.masks_report("my.custom"));
        assert!(
            !settings.masks_report("TimeZone"),
            "validated by the server"
        );
    }
}
