//! Identity: `authorization: Bearer <JWT>` → a verified [`Caller`].
//!
//! Tokens are verified against configured public keys (EdDSA or RS256),
//! chosen by the token's `kid`; the key's own algorithm must match the
//! token's, so `alg: none` and algorithm swaps are refused. Expiry,
//! not-before, issuer (per key) and audience are checked. The claims mirror
//! the national Context Handler's privilege list: user, authority scope
//! (CVR), user-system roles and constraints (KLE, følsomhed, org unit).
//! Citizens carry only a CPR number. An IT system calling under a service
//! agreement carries `sub: system:<uuid>`, the same UUID as `it_system`, and
//! its authority's `cvr` — nothing of a person (see [`SystemCaller`]).

pub mod keys;
mod system;

pub use system::{
    BadOnBehalfOf, CertificatePins, OnBehalfOf, SYSTEM_SUBJECT_PREFIX, SystemCaller, fingerprint, with_certificate,
};

use std::collections::HashMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::{Cpr, Cvr, Kle, Sensitivity};

/// Who is calling, once the token is verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Employee(Employee),
    Citizen(CitizenCaller),
    /// An IT system, whose rights come from its service agreements only.
    System(SystemCaller),
}

/// A caseworker or other employee, acting for one authority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Employee {
    pub user_id: String,
    pub name: Option<String>,
    /// The authority the privileges are scoped to.
    pub authority: Cvr,
    pub roles: Vec<String>,
    pub kle: KleConstraint,
    /// The highest sensitivity the caller may see (1 when not given).
    pub sensitivity: Sensitivity,
    pub org_unit: Option<String>,
    /// The employee's own CPR number, if the token carries it (for the
    /// self-lookup alarm).
    pub own_cpr: Option<Cpr>,
    pub it_system: Option<String>,
}

impl Employee {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// A citizen looking at their own data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CitizenCaller {
    pub cpr: Cpr,
}

/// The KLE data constraint: which subjects the caller may see. Patterns are
/// a full code (`32.18.04`), a prefix with a wildcard (`32.18.*`, `32.*`), or
/// `*`. No constraint in the token means no KLE limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KleConstraint {
    patterns: Option<Vec<String>>,
}

impl KleConstraint {
    pub fn any() -> KleConstraint {
        KleConstraint { patterns: None }
    }

    pub fn parse(patterns: &[String]) -> Result<KleConstraint, String> {
        for p in patterns {
            let prefix = p.strip_suffix('*').unwrap_or(p);
            let ok = if p.ends_with('*') {
                prefix.is_empty()
                    || (prefix.ends_with('.') && {
                        let groups: Vec<&str> = prefix.trim_end_matches('.').split('.').collect();
                        groups.len() <= 2
                            && groups.iter().all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_digit()))
                    })
            } else {
                Kle::parse(p).is_ok()
            };
            if !ok {
                return Err(format!("KLE constraint {p:?} is not dd.dd.dd, dd.dd.*, dd.* or *"));
            }
        }
        Ok(KleConstraint { patterns: Some(patterns.to_vec()) })
    }

    /// The patterns, or `None` for no KLE limit (what is stored with a
    /// subscription, and parsed back with [`KleConstraint::parse`]).
    pub fn patterns(&self) -> Option<&[String]> {
        self.patterns.as_deref()
    }

    pub fn allows(&self, kle: &Kle) -> bool {
        let Some(patterns) = &self.patterns else { return true };
        patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => kle.as_str().starts_with(prefix),
            None => p == kle.as_str(),
        })
    }
}

/// Why a token was refused: `NO_TOKEN`, or `BAD_TOKEN` with a detail.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("bad token: {0}")]
    Bad(&'static str),
}

/// A token's audience: one name, or several (RFC 7519 allows both).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Default for Audience {
    fn default() -> Self {
        Audience::One(String::new())
    }
}

impl From<String> for Audience {
    fn from(s: String) -> Audience {
        Audience::One(s)
    }
}

impl From<&str> for Audience {
    fn from(s: &str) -> Audience {
        Audience::One(s.to_string())
    }
}

/// The longest text a claim may hold, in characters, and the most roles or
/// KLE patterns a token may carry: far above any real token, a bound on
/// what one token can make the service hold and record.
const CLAIM_MAX_CHARS: usize = 256;
const CLAIM_MAX_ITEMS: usize = 256;

/// The claims overblik reads, as they travel.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: Audience,
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The authority scope (PrivilegeGroup Scope): a CVR number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvr: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kle: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foelsomhed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orgenhed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub it_system: Option<String>,
}

impl Claims {
    /// The caller these claims describe.
    pub fn caller(&self) -> Result<Caller, TokenError> {
        let texts = [Some(&self.sub), self.name.as_ref(), self.orgenhed.as_ref(), self.it_system.as_ref()];
        let too_long =
            texts.into_iter().flatten().chain(self.roles.iter()).any(|t| t.chars().count() > CLAIM_MAX_CHARS);
        if too_long
            || self.roles.len() > CLAIM_MAX_ITEMS
            || self.kle.as_ref().is_some_and(|k| k.len() > CLAIM_MAX_ITEMS)
        {
            return Err(TokenError::Bad("a claim is longer than this service accepts"));
        }
        if self.sub.starts_with(SYSTEM_SUBJECT_PREFIX) {
            return system::caller(self).map(Caller::System);
        }
        let cpr = match &self.cpr {
            Some(c) => Some(Cpr::parse(c).map_err(|_| TokenError::Bad("the cpr claim is not a CPR number"))?),
            None => None,
        };
        let Some(cvr) = &self.cvr else {
            return match cpr {
                Some(cpr) => Ok(Caller::Citizen(CitizenCaller { cpr })),
                None => Err(TokenError::Bad("the token has neither an authority scope (cvr) nor a cpr claim")),
            };
        };
        let authority = Cvr::parse(cvr).map_err(|_| TokenError::Bad("the cvr claim is not a CVR number"))?;
        let kle = match &self.kle {
            Some(p) => KleConstraint::parse(p).map_err(|_| TokenError::Bad("a KLE constraint is malformed"))?,
            None => KleConstraint::any(),
        };
        let sensitivity = Sensitivity::from_level(self.foelsomhed.unwrap_or(1))
            .map_err(|_| TokenError::Bad("the foelsomhed claim is not 1-4"))?;
        if self.sub.trim().is_empty() {
            return Err(TokenError::Bad("the token names no user (sub)"));
        }
        Ok(Caller::Employee(Employee {
            user_id: self.sub.clone(),
            name: self.name.clone(),
            authority,
            roles: self.roles.clone(),
            kle,
            sensitivity,
            org_unit: self.orgenhed.clone(),
            own_cpr: cpr,
            it_system: self.it_system.clone(),
        }))
    }
}

/// One accepted signing key.
struct TrustedKey {
    algorithm: Algorithm,
    key: DecodingKey,
    issuer: String,
}

/// Verified tokens remembered at most. A caller sends the same token with
/// every call until it expires; checking its signature once saves the
/// signature check (the largest CPU cost of a lookup) on the rest.
const VERIFIED_CACHE: usize = 8192;

/// A token that verified, and until when it is good.
struct Verified {
    caller: Caller,
    exp: i64,
}

/// The longest a token may be valid (`exp - iat`) unless configured
/// otherwise: a working day. A token that lives longer is refused, so a
/// leaked token stops working within a day.
pub const DEFAULT_MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// Verifies tokens against the configured keys.
pub struct Verifier {
    keys: HashMap<String, TrustedKey>,
    audience: String,
    leeway_seconds: u64,
    max_lifetime_seconds: i64,
    /// Keyed by the SHA-256 of the whole token, signature included, so
    /// only the very token that verified hits.
    verified: std::sync::Mutex<HashMap<[u8; 32], Verified>>,
}

impl Verifier {
    pub fn new(audience: impl Into<String>) -> Verifier {
        Verifier {
            keys: HashMap::new(),
            audience: audience.into(),
            leeway_seconds: 30,
            max_lifetime_seconds: DEFAULT_MAX_LIFETIME.as_secs() as i64,
            verified: Default::default(),
        }
    }

    /// Refuses tokens whose `exp - iat` is longer than `max`.
    pub fn with_max_lifetime(mut self, max: std::time::Duration) -> Verifier {
        self.max_lifetime_seconds = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// Trusts `key` for tokens with its `kid` and its issuer.
    pub fn trust(&mut self, key: &keys::KeyFile) -> Result<(), keys::KeyError> {
        let (algorithm, decoding) = key.decoding_key()?;
        self.keys.insert(key.kid.clone(), TrustedKey { algorithm, key: decoding, issuer: key.issuer.clone() });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies a bearer token and returns its caller.
    pub fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        self.verify_at(token, chrono::Utc::now().timestamp()).map(|(caller, _)| caller)
    }

    /// Verifies a bearer token and returns its caller and its expiry (Unix
    /// seconds): how long privileges taken from it may be relied on.
    pub fn verify_until(&self, token: &str) -> Result<(Caller, i64), TokenError> {
        self.verify_at(token, chrono::Utc::now().timestamp())
    }

    /// `verify_until`, with the clock the remembered tokens are checked
    /// against.
    fn verify_at(&self, token: &str, now: i64) -> Result<(Caller, i64), TokenError> {
        use sha2::Digest;
        let id: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        {
            let mut verified = self.verified.lock().expect("verified tokens");
            if let Some(v) = verified.get(&id) {
                // The same rule as the full check: good until exp + leeway.
                if now - self.leeway_seconds as i64 > v.exp {
                    verified.remove(&id);
                    return Err(TokenError::Bad(describe(&ErrorKind::ExpiredSignature)));
                }
                return Ok((v.caller.clone(), v.exp));
            }
        }
        let (caller, exp) = self.verify_signed(token, now)?;
        let mut verified = self.verified.lock().expect("verified tokens");
        if verified.len() >= VERIFIED_CACHE {
            verified.retain(|_, v| v.exp + self.leeway_seconds as i64 >= now);
            if verified.len() >= VERIFIED_CACHE {
                verified.clear();
            }
        }
        verified.insert(id, Verified { caller: caller.clone(), exp });
        Ok((caller, exp))
    }

    /// The full check: key, algorithm, signature and claims.
    fn verify_signed(&self, token: &str, now: i64) -> Result<(Caller, i64), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match header_alg(token) {
            // A header that parses as JSON but names an algorithm outside the
            // accepted set — `none` above all.
            Some(alg) if !matches!(alg.as_str(), "EdDSA" | "RS256") => {
                TokenError::Bad("the token's algorithm is not accepted")
            }
            _ => TokenError::Bad(describe(e.kind())),
        })?;
        let kid = header.kid.as_deref().ok_or(TokenError::Bad("the token names no key (kid)"))?;
        let trusted = self.keys.get(kid).ok_or(TokenError::Bad("the token's key is not trusted"))?;
        if header.alg != trusted.algorithm {
            return Err(TokenError::Bad("the token's algorithm is not its key's"));
        }
        let mut validation = Validation::new(trusted.algorithm);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[&trusted.issuer]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway_seconds;
        let data = jsonwebtoken::decode::<Claims>(token, &trusted.key, &validation)
            .map_err(|e| TokenError::Bad(describe(e.kind())))?;
        let claims = data.claims;
        let iat = claims.iat.ok_or(TokenError::Bad("the token lacks a required claim"))?;
        if iat > now + self.leeway_seconds as i64 {
            return Err(TokenError::Bad("the token was issued in the future"));
        }
        if claims.exp.saturating_sub(iat) > self.max_lifetime_seconds {
            return Err(TokenError::Bad("the token is valid for longer than this service accepts"));
        }
        Ok((claims.caller()?, claims.exp))
    }
}

/// The `alg` a token's header names, read without trusting anything else.
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine;
    let first = token.split('.').next()?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(first.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    v.get("alg")?.as_str().map(str::to_string)
}

fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidAudience => "the token is for another audience",
        ErrorKind::InvalidIssuer => "the token's issuer is not its key's",
        ErrorKind::InvalidSignature => "the token's signature does not verify",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::MissingAlgorithm => {
            "the token's algorithm is not accepted"
        }
        ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
        _ => "the token is malformed",
    }
}

/// Extracts the token from an `authorization` header value.
pub fn bearer(value: Option<&str>) -> Result<&str, TokenError> {
    let v = value.ok_or(TokenError::Missing)?.trim();
    let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).ok_or(TokenError::Missing)?;
    let token = token.trim();
    if token.is_empty() { Err(TokenError::Missing) } else { Ok(token) }
}

#[cfg(test)]
mod tests;
