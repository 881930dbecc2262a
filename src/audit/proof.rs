//! Proofs as they travel: JSON a data-protection officer can hand to anyone
//! holding the public key, checked with nothing else. Pure.
//!
//! ```json
//! {"kind": "inclusion", "seq": 42, "canonical": "[42,…]", "leaf_hash": "<hex>",
//!  "path": ["<hex>", …], "checkpoint": "<signed checkpoint text>"}
//! {"kind": "consistency", "from": "<signed checkpoint text>",
//!  "to": "<signed checkpoint text>", "path": ["<hex>", …]}
//! ```
//!
//! The checkpoint texts are the signed heads as the checkpoint files hold
//! them (`super::checkpoint`); the paths are RFC 9162 proofs, bottom-up.

use super::checkpoint::{PublicKey, SignedHead, hash_hex};
use super::merkle::{self, Hash, leaf_hash};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Proof {
    Inclusion {
        seq: u64,
        /// The record's canonical form, when the proof carries it: then the
        /// leaf hash is recomputed from it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        canonical: Option<String>,
        leaf_hash: String,
        path: Vec<String>,
        checkpoint: String,
    },
    Consistency {
        from: String,
        to: String,
        path: Vec<String>,
    },
}

fn hashes(path: &[String]) -> Result<Vec<Hash>, String> {
    path.iter().map(|h| hash_hex(h).ok_or_else(|| format!("{h:?} is not a hash"))).collect()
}

fn head(text: &str, public: &PublicKey) -> Result<SignedHead, String> {
    let signed = SignedHead::decode(text).map_err(|e| e.to_string())?;
    if !public.verifies(&signed) {
        return Err(format!("checkpoint {} is not signed by this key", signed.head.size));
    }
    Ok(signed)
}

impl Proof {
    /// Checks the proof; says what it proved, or why it doesn't hold.
    pub fn check(&self, public: &PublicKey) -> Result<String, String> {
        match self {
            Proof::Inclusion { seq, canonical, leaf_hash: leaf, path, checkpoint } => {
                let signed = head(checkpoint, public)?;
                let mut leaf = hash_hex(leaf).ok_or("the leaf hash is not a hash")?;
                if let Some(c) = canonical {
                    let recomputed = leaf_hash(c.as_bytes());
                    if recomputed != leaf {
                        return Err("the record is not the one whose leaf hash the proof names".into());
                    }
                    leaf = recomputed;
                }
                let size = signed.head.size;
                if *seq == 0 || !merkle::verify_inclusion(seq - 1, size, &leaf, &hashes(path)?, &signed.head.root) {
                    return Err(format!("record {seq} is not in the log of checkpoint {size}"));
                }
                Ok(format!("record {seq} is in the log as of checkpoint {size} ({})", signed.head.time))
            }
            Proof::Consistency { from, to, path } => {
                let (a, b) = (head(from, public)?, head(to, public)?);
                let (m, n) = (a.head.size, b.head.size);
                if !merkle::verify_consistency(m, n, &a.head.root, &b.head.root, &hashes(path)?) {
                    return Err(format!("the log of checkpoint {m} is not a prefix of checkpoint {n}'s"));
                }
                Ok(format!("the log of checkpoint {m} is a prefix of checkpoint {n}'s: nothing before was changed"))
            }
        }
    }
}
