//! Signing keys: the key files `serve` trusts, and the dev key that `dev`
//! writes beside its database and `overblik token` mints with.
//!
//! A key file is JSON: `kid`, `alg` (`EdDSA` or `RS256`), the `issuer` whose
//! tokens it signs, `public_key_pem`, and — only in the dev key —
//! `private_key_pem`.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::Claims;

/// The key id of the development key. `serve` refuses it unless told to
/// accept it.
pub const DEV_KID: &str = "overblik-dev";
pub const DEV_ISSUER: &str = "overblik-dev";
/// The audience tokens must name unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "overblik";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {why}")]
    File { path: String, why: String },
    #[error("key {kid}: {why}")]
    Key { kid: String, why: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub kid: String,
    pub alg: String,
    pub issuer: String,
    pub public_key_pem: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<String>,
}

impl KeyFile {
    pub fn load(path: &Path) -> Result<KeyFile, KeyError> {
        let fail = |why: String| KeyError::File { path: path.display().to_string(), why };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let key: KeyFile = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
        key.decoding_key().map_err(|e| fail(e.to_string()))?;
        Ok(key)
    }

    /// Writes the file readable by its owner only (it may hold a private key).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let fail = |why: String| KeyError::File { path: path.display().to_string(), why };
        let json = serde_json::to_string_pretty(self).expect("key files serialise");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| fail(e.to_string()))?;
        f.write_all(json.as_bytes()).map_err(|e| fail(e.to_string()))
    }

    fn algorithm(&self) -> Result<Algorithm, KeyError> {
        match self.alg.as_str() {
            "EdDSA" => Ok(Algorithm::EdDSA),
            "RS256" => Ok(Algorithm::RS256),
            other => {
                Err(KeyError::Key { kid: self.kid.clone(), why: format!("algorithm {other:?} is not EdDSA or RS256") })
            }
        }
    }

    pub fn decoding_key(&self) -> Result<(Algorithm, DecodingKey), KeyError> {
        let alg = self.algorithm()?;
        let pem = self.public_key_pem.as_bytes();
        let key = match alg {
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
            _ => DecodingKey::from_rsa_pem(pem),
        }
        .map_err(|e| KeyError::Key { kid: self.kid.clone(), why: format!("public key: {e}") })?;
        Ok((alg, key))
    }

    fn encoding_key(&self) -> Result<(Algorithm, EncodingKey), KeyError> {
        let alg = self.algorithm()?;
        let pem = self.private_key_pem.as_deref().ok_or_else(|| KeyError::Key {
            kid: self.kid.clone(),
            why: "this key file holds no private key; only the dev key can mint".into(),
        })?;
        let key = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .map_err(|e| KeyError::Key { kid: self.kid.clone(), why: format!("private key: {e}") })?;
        Ok((alg, key))
    }

    /// A fresh Ed25519 development key.
    pub fn generate_dev() -> Result<KeyFile, KeyError> {
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
        let fail = |why: String| KeyError::Key { kid: DEV_KID.into(), why };
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| fail(e.to_string()))?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let private_key_pem = signing.to_pkcs8_pem(LineEnding::LF).map_err(|e| fail(e.to_string()))?.to_string();
        let public_key_pem =
            signing.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| fail(e.to_string()))?;
        Ok(KeyFile {
            kid: DEV_KID.into(),
            alg: "EdDSA".into(),
            issuer: DEV_ISSUER.into(),
            public_key_pem,
            private_key_pem: Some(private_key_pem),
        })
    }

    /// The dev key at `path`, created if it doesn't exist yet.
    pub fn dev_at(path: &Path) -> Result<KeyFile, KeyError> {
        if path.exists() {
            return KeyFile::load(path);
        }
        let key = KeyFile::generate_dev()?;
        key.save(path)?;
        Ok(key)
    }

    /// Signs `claims` (their `iss` is set to this key's issuer).
    pub fn mint(&self, claims: &Claims) -> Result<String, KeyError> {
        let (alg, key) = self.encoding_key()?;
        let mut header = Header::new(alg);
        header.kid = Some(self.kid.clone());
        let claims = Claims { iss: self.issuer.clone(), ..claims.clone() };
        jsonwebtoken::encode(&header, &claims, &key)
            .map_err(|e| KeyError::Key { kid: self.kid.clone(), why: e.to_string() })
    }
}
