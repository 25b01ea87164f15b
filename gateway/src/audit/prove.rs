//! `tollgate audit prove`: RFC 9162 inclusion and consistency proofs against the log's latest
//! checkpoint, as JSON a third party can check with the verifier key alone (`tollgate audit
//! verify --proof FILE`, or any RFC 9162 verifier).

use std::path::Path;

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Serialize};

use super::{
    event::Event,
    merkle::{self, leaf_hash, Hash},
    note::{self, Checkpoint, VerifierKey},
    record::Record,
    segment,
};

#[derive(Debug, Serialize, Deserialize)]
pub struct Proof {
    /// The signed checkpoint the proof is against.
    pub checkpoint: String,
    pub tree_size: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub inclusion: Option<Inclusion>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consistency: Option<Consistency>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Inclusion {
    pub index: u64,
    /// The record as it is in the log (its leaf is SHA-256(0x00 || record)).
    pub record: String,
    pub path: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Consistency {
    pub old_size: u64,
    pub old_root: String,
    pub path: Vec<String>,
}

pub enum Asked {
    Inclusion(u64),
    Consistency(u64),
}

/// Reads the log's leaves up to its last checkpoint and proves what was asked against it.
pub fn prove(dir: &Path, asked: Asked) -> Result<Proof, String> {
    let mut leaves: Vec<Hash> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut latest: Option<(String, u64)> = None;
    let wanted = match asked {
        Asked::Inclusion(index) => Some(index),
        Asked::Consistency(_) => None,
    };
    segment::for_each_line(dir, |_, line| {
        if let Ok(Record {
            event: Event::Checkpoint { note },
            index,
            ..
        }) = Record::parse(line)
        {
            latest = Some((note, index));
        }
        if wanted == Some(leaves.len() as u64) {
            lines.push(String::from_utf8_lossy(line).into_owned());
        }
        leaves.push(leaf_hash(line));
        Ok::<(), String>(())
    })
    .map_err(|e| e.to_string())?;
    let (checkpoint, size) = latest.ok_or("the log has no checkpoint yet")?;
    let signed = &leaves[..size as usize];
    let mut proof = Proof {
        checkpoint,
        tree_size: size,
        inclusion: None,
        consistency: None,
    };
    match asked {
        Asked::Inclusion(index) => {
            let path = merkle::inclusion_proof(signed, index).map_err(|e| {
                format!("record {index}: {e} (the latest checkpoint signs {size} records)")
            })?;
            proof.inclusion = Some(Inclusion {
                index,
                record: lines.pop().unwrap_or_default(),
                path: path.iter().map(|h| STANDARD.encode(h)).collect(),
            });
        }
        Asked::Consistency(old_size) => {
            let path = merkle::consistency_proof(signed, old_size)
                .map_err(|e| format!("from size {old_size}: {e}"))?;
            proof.consistency = Some(Consistency {
                old_size,
                old_root: STANDARD.encode(merkle::root(&signed[..old_size as usize])),
                path: path.iter().map(|h| STANDARD.encode(h)).collect(),
            });
        }
    }
    Ok(proof)
}

/// Checks a proof with the verifier key alone; says what it proves.
pub fn check(proof: &Proof, key: &VerifierKey) -> Result<String, String> {
    let body = note::open(&proof.checkpoint, key).map_err(|e| format!("checkpoint: {e}"))?;
    let checkpoint = Checkpoint::parse(&body).map_err(|e| format!("checkpoint: {e}"))?;
    if checkpoint.size != proof.tree_size {
        return Err(format!(
            "the proof is for size {}, its checkpoint signs {}",
            proof.tree_size, checkpoint.size
        ));
    }
    let hashes = |path: &[String]| -> Result<Vec<Hash>, String> {
        path.iter().map(|h| decode_hash(h)).collect()
    };
    if let Some(inclusion) = &proof.inclusion {
        let leaf = leaf_hash(inclusion.record.as_bytes());
        merkle::verify_inclusion(
            &leaf,
            inclusion.index,
            checkpoint.size,
            &hashes(&inclusion.path)?,
            &checkpoint.root,
        )
        .map_err(|e| format!("inclusion of record {}: {e}", inclusion.index))?;
        return Ok(format!(
            "record {} is in the log `{}` of {} records signed by {}",
            inclusion.index,
            checkpoint.origin,
            checkpoint.size,
            key.name()
        ));
    }
    if let Some(consistency) = &proof.consistency {
        merkle::verify_consistency(
            consistency.old_size,
            checkpoint.size,
            &decode_hash(&consistency.old_root)?,
            &checkpoint.root,
            &hashes(&consistency.path)?,
        )
        .map_err(|e| format!("consistency from size {}: {e}", consistency.old_size))?;
        return Ok(format!(
            "the log `{}` of {} records grew from its first {} records (root {}) by appending only",
            checkpoint.origin, checkpoint.size, consistency.old_size, consistency.old_root
        ));
    }
    Err("the proof proves nothing: neither inclusion nor consistency".to_owned())
}

fn decode_hash(text: &str) -> Result<Hash, String> {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| format!("`{text}` is not a base64 SHA-256 hash"))
}
