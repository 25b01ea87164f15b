//! What `tollgate audit ...` does, for the command line: each takes the configuration's
//! `[audit]` settings and returns the text to print, or the error to name.

use std::path::Path;

use super::{
    keys,
    log::LATEST_CHECKPOINT,
    note::VerifierKey,
    prove::{self, Asked, Proof},
    verify::{self, Outside},
};
use crate::config::AuditSettings;

/// `audit public-key`: the verifier key, to keep wherever the log is checked.
pub fn public_key(settings: &AuditSettings) -> Result<String, String> {
    let key = keys::load(&settings.key_file).map_err(|e| e.to_string())?;
    Ok(format!("{}\n", key.verifier().to_text()))
}

/// `audit checkpoint`: the latest signed checkpoint.
pub fn checkpoint(settings: &AuditSettings) -> Result<String, String> {
    let path = settings.dir.join(LATEST_CHECKPOINT);
    std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The verifier key given (its text, or a file holding it), else the one of the log's own
/// signing key (which proves less: whoever can replace the log may replace that file too).
fn verifier(settings: &AuditSettings, given: Option<&str>) -> Result<(VerifierKey, bool), String> {
    match given {
        Some(text) => {
            let text = match Path::new(text).is_file() {
                true => std::fs::read_to_string(text).map_err(|e| format!("{text}: {e}"))?,
                false => text.to_owned(),
            };
            VerifierKey::parse(text.trim())
                .map(|k| (k, true))
                .map_err(|e| format!("--key: {e}"))
        }
        None => keys::load(&settings.key_file)
            .map(|k| (k.verifier(), false))
            .map_err(|e| e.to_string()),
    }
}

/// `audit verify`: Ok(report) when intact, Err naming the first bad record otherwise.
pub fn verify(
    settings: &AuditSettings,
    since: Option<&Path>,
    key: Option<&str>,
) -> Result<String, String> {
    let (key, pinned) = verifier(settings, key)?;
    let mut outside = Vec::new();
    let latest = settings.dir.join(LATEST_CHECKPOINT);
    if let Ok(note) = std::fs::read_to_string(&latest) {
        outside.push(Outside {
            label: format!("the latest checkpoint ({})", latest.display()),
            note,
        });
    }
    if let Some(file) = since {
        let note = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        outside.push(Outside {
            label: format!("the checkpoint in {}", file.display()),
            note,
        });
    }
    if !settings.dir.is_dir() {
        return Err(format!("{}: no audit log here", settings.dir.display()));
    }
    let report = verify::verify(&settings.dir, &key, &settings.origin, &outside)
        .map_err(|p| p.to_string())?;
    let mut text = format!(
        "{}: intact: {} records, {} checkpoints signed by {}\n",
        settings.dir.display(),
        report.records,
        report.checkpoints,
        key.to_text()
    );
    if !pinned {
        text.push_str(
            "  key: the log's own (pass --key with the verifier key kept elsewhere to also \
             rule out a replaced key)\n",
        );
    }
    let unsigned = report.records - report.signed;
    if unsigned > 0 {
        text.push_str(&format!(
            "  {unsigned} records after the last checkpoint are not signed yet (the gateway \
             signs them within a second, or when it starts again)\n"
        ));
    }
    if let Some(torn) = report.torn_tail {
        text.push_str(&format!(
            "  a record a crash left half-written at {torn} (dropped when the gateway starts)\n"
        ));
    }
    for (label, size) in report.outside {
        text.push_str(&format!("  grew from {label} ({size} records)\n"));
    }
    Ok(text)
}

/// `audit prove`: the proof as JSON.
pub fn prove(settings: &AuditSettings, asked: Asked) -> Result<String, String> {
    let proof = prove::prove(&settings.dir, asked)?;
    serde_json::to_string_pretty(&proof)
        .map(|json| json + "\n")
        .map_err(|e| e.to_string())
}

/// `audit verify --proof FILE`.
pub fn check_proof(
    settings: &AuditSettings,
    file: &Path,
    key: Option<&str>,
) -> Result<String, String> {
    let (key, _) = verifier(settings, key)?;
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let proof: Proof =
        serde_json::from_str(&text).map_err(|e| format!("{}: not a proof: {e}", file.display()))?;
    prove::check(&proof, &key).map(|ok| format!("{ok}\n"))
}
