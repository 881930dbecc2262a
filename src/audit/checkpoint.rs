//! Signed checkpoints of the audit log, and the key that signs them.
//!
//! A checkpoint is a signed tree head — the log's size, its Merkle root
//! ([`super::merkle`]) and the time — written to the database and, one
//! file per checkpoint, to a directory outside it. The file also carries
//! the leaf hashes of the records since the previous checkpoint: they hash
//! up to the signed root, so they need no signature of their own, and with
//! them a verifier names exactly the first record the database changed,
//! however thoroughly its hashes were recomputed.
//!
//! # The file format (version 1)
//!
//! UTF-8 text, `\n` line ends, named `<size, 20 digits>.checkpoint`:
//!
//! ```text
//! overblik audit checkpoint v1
//! key <key id: 16 hex digits>
//! size <number of records covered>
//! root <Merkle root: 64 hex digits>
//! time <RFC 3339 UTC, microseconds>
//! unvouched <seq> <seq> …          (only if some; see below)
//! signature <Ed25519 signature, base64 (standard, padded)>
//! leaves <first seq - 1> <leaf hashes, 32 bytes each, concatenated, base64>
//! ```
//!
//! The signature covers the bytes of every line before the `signature`
//! line, newlines included. The key id is the first 8 bytes of SHA-256 of
//! the raw 32-byte public key, in hex. A record's leaf hash is
//! `SHA-256(0x00 ‖ its canonical form)` (`super::canonical`), and the root
//! is RFC 9162's Merkle tree hash over the leaves in sequence order.
//! `unvouched` names records the service found in the log that it did not
//! write (their MAC doesn't verify): they are in the tree — the tree has no
//! gaps — and the signed checkpoint says they are forged.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

const MAGIC: &str = "overblik audit checkpoint v1";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// At most this many unvouched records are named in one checkpoint (the
/// first ones; the verifier needs only the first).
pub const UNVOUCHED_LISTED: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {why}")]
    Key { path: String, why: String },
    #[error("not a checkpoint: {0}")]
    Format(String),
}

/// The checkpoint key: signs tree heads, and keys the records' MACs.
pub struct AuditKey {
    signing: SigningKey,
    mac: [u8; 32],
}

/// What verifies checkpoints: the public half.
#[derive(Clone, Debug)]
pub struct PublicKey {
    key: VerifyingKey,
}

fn key_id(public: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(public.as_bytes())[..8])
}

impl AuditKey {
    pub fn generate() -> Result<AuditKey, CheckpointError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| CheckpointError::Key { path: "(random)".into(), why: e.to_string() })?;
        Ok(AuditKey::from_seed(seed))
    }

    fn from_seed(seed: [u8; 32]) -> AuditKey {
        let signing = SigningKey::from_bytes(&seed);
        // The MAC key is derived, so one secret serves both and instances
        // sharing the key agree on both.
        let mut h = Sha256::new();
        h.update(b"overblik audit record mac v1\0");
        h.update(seed);
        AuditKey { signing, mac: h.finalize().into() }
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn load(path: &Path) -> Result<AuditKey, CheckpointError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let fail = |why: String| CheckpointError::Key { path: path.display().to_string(), why };
        let pem = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|e| fail(format!("not an Ed25519 private key: {e}")))?;
        Ok(AuditKey::from_seed(signing.to_bytes()))
    }

    /// Writes the private key (readable by its owner only) and, beside it
    /// with `.pub` appended, the public key for verifiers.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;

        use ed25519_dalek::pkcs8::EncodePrivateKey;
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        let fail = |why: String| CheckpointError::Key { path: path.display().to_string(), why };
        let pem = self.signing.to_pkcs8_pem(LineEnding::LF).map_err(|e| fail(e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| fail(e.to_string()))?;
        f.write_all(pem.as_bytes()).map_err(|e| fail(e.to_string()))?;
        self.public().save(&public_path(path))
    }

    /// The key at `path`, made (with its public half) if there is none yet.
    pub fn dev_at(path: &Path) -> Result<AuditKey, CheckpointError> {
        if path.exists() {
            return AuditKey::load(path);
        }
        let key = AuditKey::generate()?;
        key.save(path)?;
        Ok(key)
    }

    pub fn public(&self) -> PublicKey {
        PublicKey { key: self.signing.verifying_key() }
    }

    pub fn key_id(&self) -> String {
        key_id(&self.signing.verifying_key())
    }

    /// The MAC of a record's leaf hash: HMAC-SHA-256 under the derived key,
    /// cut to 16 bytes, in hex.
    pub fn mac(&self, leaf: &Hash) -> String {
        hex::encode(&hmac_sha256(&self.mac, leaf)[..16])
    }

    /// Signs a tree head.
    pub fn sign(&self, head: TreeHead) -> SignedHead {
        let head = TreeHead { key_id: self.key_id(), ..head };
        let signature = self.signing.sign(head.body().as_bytes());
        SignedHead { head, signature: signature.to_bytes() }
    }
}

/// Where the public key of a private key file is written.
pub fn public_path(private: &Path) -> std::path::PathBuf {
    let mut p = private.as_os_str().to_owned();
    p.push(".pub");
    p.into()
}

impl PublicKey {
    /// Reads an SPKI PEM public key.
    pub fn load(path: &Path) -> Result<PublicKey, CheckpointError> {
        use ed25519_dalek::pkcs8::DecodePublicKey;
        let fail = |why: String| CheckpointError::Key { path: path.display().to_string(), why };
        let pem = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let key =
            VerifyingKey::from_public_key_pem(&pem).map_err(|e| fail(format!("not an Ed25519 public key: {e}")))?;
        Ok(PublicKey { key })
    }

    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        let fail = |why: String| CheckpointError::Key { path: path.display().to_string(), why };
        let pem = self.key.to_public_key_pem(LineEnding::LF).map_err(|e| fail(e.to_string()))?;
        std::fs::write(path, pem).map_err(|e| fail(e.to_string()))
    }

    pub fn key_id(&self) -> String {
        key_id(&self.key)
    }

    /// Whether `signed` was signed by this key.
    pub fn verifies(&self, signed: &SignedHead) -> bool {
        signed.head.key_id == self.key_id()
            && self.key.verify(signed.head.body().as_bytes(), &Signature::from_bytes(&signed.signature)).is_ok()
    }
}

/// HMAC-SHA-256 (RFC 2104) with a 32-byte key.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> Hash {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let pad = |b: u8| -> [u8; 64] { block.map(|k| k ^ b) };
    let inner: Hash = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize().into();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// What a checkpoint says: the log had `size` records, with this root, at
/// this time; and which of them were not the service's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeHead {
    pub key_id: String,
    pub size: u64,
    pub root: Hash,
    pub time: DateTime<Utc>,
    /// Records in the tree that the service did not write, first ones.
    pub unvouched: Vec<u64>,
}

impl TreeHead {
    pub fn new(size: u64, root: Hash, time: DateTime<Utc>, unvouched: Vec<u64>) -> TreeHead {
        TreeHead { key_id: String::new(), size, root, time: super::stamp(time), unvouched }
    }

    /// The signed text.
    fn body(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{MAGIC}");
        let _ = writeln!(s, "key {}", self.key_id);
        let _ = writeln!(s, "size {}", self.size);
        let _ = writeln!(s, "root {}", hex::encode(self.root));
        let _ = writeln!(s, "time {}", self.time.to_rfc3339_opts(SecondsFormat::Micros, true));
        if !self.unvouched.is_empty() {
            let seqs: Vec<String> = self.unvouched.iter().map(u64::to_string).collect();
            let _ = writeln!(s, "unvouched {}", seqs.join(" "));
        }
        s
    }
}

/// A tree head with its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHead {
    pub head: TreeHead,
    pub signature: [u8; 64],
}

impl SignedHead {
    /// The signed head as text: the body and the signature line.
    pub fn encode(&self) -> String {
        format!("{}signature {}\n", self.head.body(), B64.encode(self.signature))
    }

    /// Parses what [`SignedHead::encode`] writes (and ignores what follows
    /// the signature line).
    pub fn decode(text: &str) -> Result<SignedHead, CheckpointError> {
        let bad = |why: &str| CheckpointError::Format(why.to_string());
        let mut lines = text.split('\n');
        if lines.next() != Some(MAGIC) {
            return Err(bad("the first line is not the checkpoint header"));
        }
        let mut next = |name: &str| -> Result<&str, CheckpointError> {
            let line = lines.next().ok_or_else(|| bad("a line is missing"))?;
            line.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).ok_or_else(|| bad(&format!("expected {name}")))
        };
        let key_id = next("key")?.to_string();
        let size = next("size")?.parse().map_err(|_| bad("size is not a number"))?;
        let root = hash_hex(next("root")?).ok_or_else(|| bad("root is not 64 hex digits"))?;
        let time =
            DateTime::parse_from_rfc3339(next("time")?).map_err(|_| bad("time is not RFC 3339"))?.with_timezone(&Utc);
        let mut unvouched = Vec::new();
        let signature = match next("unvouched") {
            Ok(list) => {
                unvouched = list
                    .split(' ')
                    .map(|s| s.parse::<u64>().map_err(|_| bad("unvouched is not a list of numbers")))
                    .collect::<Result<_, _>>()?;
                next("signature")?
            }
            // Without unvouched records the signature follows the time.
            Err(_) => text
                .split('\n')
                .nth(5)
                .and_then(|l| l.strip_prefix("signature "))
                .ok_or_else(|| bad("expected signature"))?,
        };
        let sig = B64.decode(signature.as_bytes()).map_err(|_| bad("the signature is not base64"))?;
        let signature: [u8; 64] = sig.try_into().map_err(|_| bad("the signature is not 64 bytes"))?;
        Ok(SignedHead { head: TreeHead { key_id, size, root, time, unvouched }, signature })
    }
}

/// A parsed 64-hex-digit hash.
pub fn hash_hex(s: &str) -> Option<Hash> {
    let bytes = hex::decode(s).ok()?;
    bytes.try_into().ok()
}

/// A checkpoint file: the signed head and the leaves it adds to the
/// previous checkpoint's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointFile {
    pub signed: SignedHead,
    /// The size of the previous checkpoint: the leaves are those of
    /// records `after + 1 ..= size`.
    pub after: u64,
    pub leaves: Vec<Hash>,
}

impl CheckpointFile {
    pub fn file_name(size: u64) -> String {
        format!("{size:020}.checkpoint")
    }

    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(self.leaves.len() * 32);
        for l in &self.leaves {
            raw.extend_from_slice(l);
        }
        format!("{}leaves {} {}\n", self.signed.encode(), self.after, B64.encode(raw))
    }

    pub fn decode(text: &str) -> Result<CheckpointFile, CheckpointError> {
        let bad = |why: &str| CheckpointError::Format(why.to_string());
        let signed = SignedHead::decode(text)?;
        let line =
            text.lines().find_map(|l| l.strip_prefix("leaves ")).ok_or_else(|| bad("the leaves line is missing"))?;
        let (after, b64) = line.split_once(' ').unwrap_or((line, ""));
        let after: u64 = after.parse().map_err(|_| bad("leaves does not start with a number"))?;
        let raw = B64.decode(b64.as_bytes()).map_err(|_| bad("the leaves are not base64"))?;
        if raw.len() % 32 != 0 {
            return Err(bad("the leaves are not whole hashes"));
        }
        let leaves: Vec<Hash> = raw.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
        if after.checked_add(leaves.len() as u64) != Some(signed.head.size) {
            return Err(bad("the leaves don't end at the checkpoint's size"));
        }
        Ok(CheckpointFile { signed, after, leaves })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(size: u64, unvouched: Vec<u64>) -> TreeHead {
        TreeHead::new(size, [7; 32], Utc::now(), unvouched)
    }

    #[test]
    fn a_signed_head_round_trips_and_verifies_only_unchanged() {
        let key = AuditKey::generate().unwrap();
        for unvouched in [vec![], vec![12, 40]] {
            let signed = key.sign(head(42, unvouched));
            let text = signed.encode();
            let back = SignedHead::decode(&text).unwrap();
            assert_eq!(back, signed);
            assert!(key.public().verifies(&back));
            for (from, to) in [("size 42", "size 43"), ("root 07", "root 08")] {
                let forged = SignedHead::decode(&text.replacen(from, to, 1)).unwrap();
                assert!(!key.public().verifies(&forged), "{from} → {to}");
            }
            let other = AuditKey::generate().unwrap();
            assert!(!other.public().verifies(&back), "another key");
        }
    }

    #[test]
    fn a_file_carries_its_leaves_and_refuses_a_mismatch() {
        let key = AuditKey::generate().unwrap();
        let file = CheckpointFile { signed: key.sign(head(3, vec![])), after: 1, leaves: vec![[1; 32], [2; 32]] };
        let text = file.encode();
        assert_eq!(CheckpointFile::decode(&text).unwrap(), file);
        let short = CheckpointFile { after: 2, ..file };
        assert!(CheckpointFile::decode(&short.encode()).is_err(), "leaves that don't end at the size");
        assert!(CheckpointFile::decode("not a checkpoint\n").is_err());
        assert_eq!(CheckpointFile::file_name(42), "00000000000000000042.checkpoint");
    }

    #[test]
    fn keys_round_trip_through_files_and_derive_one_mac() {
        let dir = std::env::temp_dir().join(format!("overblik-key-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.key");
        let key = AuditKey::dev_at(&path).unwrap();
        let again = AuditKey::dev_at(&path).unwrap();
        let public = PublicKey::load(&public_path(&path)).unwrap();
        assert_eq!((again.key_id(), public.key_id()), (key.key_id(), key.key_id()));
        assert_eq!(again.mac(&[3; 32]), key.mac(&[3; 32]));
        assert_ne!(key.mac(&[3; 32]), key.mac(&[4; 32]));
        assert_ne!(AuditKey::generate().unwrap().mac(&[3; 32]), key.mac(&[3; 32]));
        assert!(public.verifies(&again.sign(head(1, vec![]))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231 uses a 4-byte key; with a 32-byte key we
        // check against the definition instead: HMAC(K, m) with K padded.
        let key = [0x0b; 32];
        let got = hmac_sha256(&key, b"Hi There");
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(&key);
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).chain(b"Hi There".iter().copied()).collect();
        let inner = Sha256::digest(&ipad);
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(inner.iter().copied()).collect();
        assert_eq!(got.to_vec(), Sha256::digest(&opad).to_vec());
    }
}

/// The append-only directory checkpoint files are written to.
#[derive(Clone, Debug)]
pub struct Sink {
    dir: std::path::PathBuf,
}

impl Sink {
    /// The directory, created if missing.
    pub fn open(dir: &Path) -> std::io::Result<Sink> {
        std::fs::create_dir_all(dir)?;
        Ok(Sink { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `file` durably: to a temporary name, synced, renamed into
    /// place, the directory synced. A checkpoint of that size already
    /// there is never replaced: it is returned instead.
    pub fn write(&self, file: &CheckpointFile) -> std::io::Result<Option<CheckpointFile>> {
        use std::io::Write;
        let name = CheckpointFile::file_name(file.signed.head.size);
        let path = self.dir.join(&name);
        if path.exists() {
            let text = std::fs::read_to_string(&path)?;
            let existing = CheckpointFile::decode(&text).map_err(|e| std::io::Error::other(e.to_string()))?;
            return Ok(Some(existing));
        }
        let tmp = self.dir.join(format!(".{name}.{}", uuid::Uuid::new_v4().simple()));
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(file.encode().as_bytes())?;
        f.sync_all()?;
        drop(f);
        // A hard link refuses to replace an existing file, where rename
        // would: two writers of the same size can't overwrite each other.
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(&path)?;
                let existing = CheckpointFile::decode(&text).map_err(|e| std::io::Error::other(e.to_string()))?;
                return Ok(Some(existing));
            }
            Err(e) => return Err(e),
        }
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(None)
    }

    /// Whether the file of the checkpoint of `size` records is there: one
    /// look-up, where [`Sink::latest`] lists the whole directory, which
    /// grows by a file per checkpoint.
    pub fn holds(&self, size: u64) -> bool {
        self.dir.join(CheckpointFile::file_name(size)).exists()
    }

    /// The newest checkpoint file, if any.
    pub fn latest(&self) -> std::io::Result<Option<CheckpointFile>> {
        let mut newest: Option<std::path::PathBuf> = None;
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "checkpoint") && newest.as_ref().is_none_or(|n| p > *n) {
                newest = Some(p);
            }
        }
        let Some(p) = newest else { return Ok(None) };
        let text = std::fs::read_to_string(&p)?;
        CheckpointFile::decode(&text).map(Some).map_err(|e| std::io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
mod sink_tests {
    use super::*;

    #[test]
    fn a_written_checkpoint_is_never_replaced() {
        let dir = std::env::temp_dir().join(format!("overblik-sink-{}", uuid::Uuid::new_v4().simple()));
        let sink = Sink::open(&dir).unwrap();
        assert!(!sink.holds(1));
        let key = AuditKey::generate().unwrap();
        let file = |root: u8| CheckpointFile {
            signed: key.sign(TreeHead::new(1, [root; 32], Utc::now(), vec![])),
            after: 0,
            leaves: vec![[root; 32]],
        };
        assert_eq!(sink.write(&file(1)).unwrap(), None);
        assert!(sink.holds(1) && !sink.holds(2));
        let kept = sink.write(&file(2)).unwrap().expect("the first one stays");
        assert_eq!(kept.signed.head.root, [1; 32]);
        assert_eq!(sink.latest().unwrap().unwrap().signed.head.root, [1; 32]);
        let names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["00000000000000000001.checkpoint"], "no temporary files left");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
