//! IT systems as callers: a municipality's ESDH or a job-centre system
//! reading the indexes under a service agreement (serviceaftale).
//!
//! A system token is marked by its subject, `system:<uuid>`, and carries the
//! same UUID in `it_system` and the authority's `cvr`. It carries nothing of
//! a person: a token that also has `cpr`, roles, a KLE constraint, a
//! sensitivity or an org unit is ambiguous — is it a citizen, an employee or
//! a system? — and refused. A system's rights come from its agreement, never
//! from its token.
//!
//! A system may also be known by its client certificate (mTLS): the service
//! is configured with the SHA-256 of each system's certificate
//! ([`CertificatePins`]), so a pinned certificate names its system and
//! authority without a token, and a token sent with it must name the same.
//!
//! A system may name the person it calls for in `x-onbehalfofuser`. That
//! value is the caller's own text, so it is validated before it goes
//! anywhere: one printable line, bounded, nothing invisible, and never a
//! personal number (a user id, not a citizen).

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Claims, TokenError};
use crate::domain::Cvr;
use crate::ingest::parked::{BadNote, Note};

/// The subject prefix of a system token: `system:<uuid>`.
pub const SYSTEM_SUBJECT_PREFIX: &str = "system:";

/// An IT system acting for one authority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemCaller {
    pub it_system: Uuid,
    pub authority: Cvr,
}

impl SystemCaller {
    /// The user id the audit log names the system by: `system:<uuid>`.
    pub fn user_id(&self) -> String {
        format!("{SYSTEM_SUBJECT_PREFIX}{}", self.it_system)
    }
}

/// The caller described by the claims of a system token (`sub` starts with
/// [`SYSTEM_SUBJECT_PREFIX`]).
pub(super) fn caller(c: &Claims) -> Result<SystemCaller, TokenError> {
    let it_system = c
        .sub
        .strip_prefix(SYSTEM_SUBJECT_PREFIX)
        .and_then(|u| Uuid::parse_str(u).ok())
        .filter(|u| c.sub == format!("{SYSTEM_SUBJECT_PREFIX}{u}"))
        .ok_or(TokenError::Bad("a system token's sub is system:<uuid>, lowercase and hyphenated"))?;
    if c.it_system.as_deref() != Some(it_system.to_string().as_str()) {
        return Err(TokenError::Bad("a system token's it_system claim is the UUID of its sub"));
    }
    let personal = c.cpr.is_some()
        || !c.roles.is_empty()
        || c.kle.is_some()
        || c.foelsomhed.is_some()
        || c.orgenhed.is_some()
        || c.name.is_some();
    if personal {
        return Err(TokenError::Bad("a system token carries no person's claims (cpr, name, roles, kle, foelsomhed)"));
    }
    let cvr = c.cvr.as_deref().ok_or(TokenError::Bad("a system token names its authority (cvr)"))?;
    let authority = Cvr::parse(cvr).map_err(|_| TokenError::Bad("the cvr claim is not a CVR number"))?;
    Ok(SystemCaller { it_system, authority })
}

/// Client certificates pinned to IT systems: the SHA-256 of a certificate
/// (its DER bytes) → the system and authority it stands for. Pinning the
/// certificate itself, rather than reading names out of it, keeps a
/// certificate the CA issued to someone else from ever counting as a
/// system.
#[derive(Clone, Debug, Default)]
pub struct CertificatePins(HashMap<[u8; 32], SystemCaller>);

impl CertificatePins {
    /// Pins from `<sha256 hex>=<system uuid>@<cvr>`, one per certificate.
    pub fn parse(specs: &[String]) -> Result<CertificatePins, String> {
        let mut pins = HashMap::new();
        for spec in specs {
            const RULE: &str = "a certificate pin is <sha256 of the DER certificate, hex>=<system uuid>@<cvr>";
            let (hash, system) = spec.split_once('=').ok_or(RULE)?;
            let (uuid, cvr) = system.split_once('@').ok_or(RULE)?;
            let hash: [u8; 32] = hex::decode(hash.trim()).ok().and_then(|h| h.try_into().ok()).ok_or(RULE)?;
            let it_system = Uuid::parse_str(uuid.trim()).map_err(|_| RULE)?;
            let authority = Cvr::parse(cvr.trim()).map_err(|_| RULE)?;
            if pins.insert(hash, SystemCaller { it_system, authority }).is_some() {
                return Err("a certificate is pinned twice".into());
            }
        }
        Ok(CertificatePins(pins))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The system a client certificate (DER) is pinned to.
    pub fn system_of(&self, der: &[u8]) -> Option<&SystemCaller> {
        self.0.get(&fingerprint(der))
    }
}

/// A certificate's SHA-256 fingerprint, over its DER bytes.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Who calls, from the token (if any) and the client certificate (if it
/// is pinned): a pinned certificate alone is its system; with a token, the
/// token must be that system's with the same authority. A token that fails
/// stays failed.
pub fn with_certificate(
    token: Result<super::Caller, TokenError>,
    pinned: Option<&SystemCaller>,
) -> Result<super::Caller, TokenError> {
    use super::Caller;
    match (pinned, token) {
        (None, token) => token,
        (Some(system), Err(TokenError::Missing)) => Ok(Caller::System(system.clone())),
        (Some(system), Ok(Caller::System(named))) if &named == system => Ok(Caller::System(named)),
        (Some(_), Ok(_)) => Err(TokenError::Bad("the token and the client certificate name different callers")),
        (Some(_), Err(bad)) => Err(bad),
    }
}

/// The person a system says it calls for (`x-onbehalfofuser`), validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnBehalfOf(Note);

/// Why an `x-onbehalfofuser` value was refused. The texts are fixed: they
/// never repeat the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadOnBehalfOf {
    #[error("x-onbehalfofuser is not visible ASCII text")]
    NotText,
    #[error(transparent)]
    Rule(#[from] BadNote),
}

impl OnBehalfOf {
    /// The longest value accepted, in characters: a user id or e-mail
    /// address, with room to spare.
    pub const MAX_CHARS: usize = 128;
    pub const HEADER: &'static str = "x-onbehalfofuser";

    /// From the header's raw bytes: visible ASCII (what a gRPC header
    /// carries as text), one line, at most [`Self::MAX_CHARS`], no personal
    /// number.
    pub fn parse(raw: &[u8]) -> Result<OnBehalfOf, BadOnBehalfOf> {
        let text = std::str::from_utf8(raw).map_err(|_| BadOnBehalfOf::NotText)?;
        if !text.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
            return Err(BadOnBehalfOf::NotText);
        }
        Ok(OnBehalfOf(Note::new(text, Self::HEADER, Self::MAX_CHARS)?))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str) -> Claims {
        Claims {
            sub: sub.into(),
            it_system: Some("7d9f8b1e-2c3a-4b5d-8e6f-0a1b2c3d4e5f".into()),
            cvr: Some("55133018".into()),
            ..Default::default()
        }
    }

    const SUB: &str = "system:7d9f8b1e-2c3a-4b5d-8e6f-0a1b2c3d4e5f";

    #[test]
    fn a_system_token_names_its_system_and_authority() {
        let c = caller(&claims(SUB)).unwrap();
        assert_eq!(c.it_system.to_string(), "7d9f8b1e-2c3a-4b5d-8e6f-0a1b2c3d4e5f");
        assert_eq!(c.authority.as_str(), "55133018");
        assert_eq!(c.user_id(), SUB);
    }

    #[test]
    fn ambiguous_or_malformed_system_tokens_are_refused() {
        let refused = |c: Claims| caller(&c).unwrap_err();
        refused(Claims { cpr: Some("0101801234".into()), ..claims(SUB) });
        refused(Claims { roles: vec!["Se sager".into()], ..claims(SUB) });
        refused(Claims { kle: Some(vec!["*".into()]), ..claims(SUB) });
        refused(Claims { foelsomhed: Some(4), ..claims(SUB) });
        refused(Claims { name: Some("x".into()), ..claims(SUB) });
        refused(Claims { cvr: None, ..claims(SUB) });
        refused(Claims { it_system: None, ..claims(SUB) });
        refused(Claims { it_system: Some("00000000-0000-0000-0000-000000000001".into()), ..claims(SUB) });
        refused(claims("system:not-a-uuid"));
        refused(claims("system:7D9F8B1E-2C3A-4B5D-8E6F-0A1B2C3D4E5F"));
        refused(claims("system:7d9f8b1e2c3a4b5d8e6f0a1b2c3d4e5f"));
    }

    #[test]
    fn a_pinned_certificate_is_its_system_and_a_token_with_it_must_agree() {
        use super::super::{Caller, CitizenCaller};
        let der = b"a client certificate";
        let spec = format!("{}=7d9f8b1e-2c3a-4b5d-8e6f-0a1b2c3d4e5f@55133018", hex::encode(fingerprint(der)));
        let pins = CertificatePins::parse(std::slice::from_ref(&spec)).unwrap();
        let system = pins.system_of(der).unwrap().clone();
        assert_eq!(system, caller(&claims(SUB)).unwrap());
        assert!(pins.system_of(b"another certificate").is_none());
        assert_eq!(with_certificate(Err(TokenError::Missing), Some(&system)), Ok(Caller::System(system.clone())));
        let same = Ok(Caller::System(system.clone()));
        assert_eq!(with_certificate(same, Some(&system)), Ok(Caller::System(system.clone())));
        let elsewhere = SystemCaller { authority: Cvr::parse("35209115").unwrap(), ..system.clone() };
        assert!(with_certificate(Ok(Caller::System(elsewhere)), Some(&system)).is_err());
        let citizen = Caller::Citizen(CitizenCaller { cpr: crate::domain::Cpr::parse("0101801234").unwrap() });
        assert!(with_certificate(Ok(citizen.clone()), Some(&system)).is_err());
        assert_eq!(with_certificate(Ok(citizen.clone()), None), Ok(citizen));
        assert_eq!(with_certificate(Err(TokenError::Bad("x")), Some(&system)), Err(TokenError::Bad("x")));
        for bad in ["", "abc=7d9f8b1e-2c3a-4b5d-8e6f-0a1b2c3d4e5f@55133018", &spec.replace("@55133018", "@x")] {
            assert!(CertificatePins::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(CertificatePins::parse(&[spec.clone(), spec]).is_err(), "pinned twice");
    }

    #[test]
    fn on_behalf_of_is_one_bounded_line_without_a_personal_number() {
        assert_eq!(OnBehalfOf::parse(b"mh@aarhus.dk").unwrap().as_str(), "mh@aarhus.dk");
        assert_eq!(OnBehalfOf::parse(b"  AZ12345 ").unwrap().as_str(), "AZ12345");
        for bad in [
            &b""[..],
            b"   ",
            b"a\x00b",
            b"a\nb",
            b"a\x1bb",
            b"\xe2\x80\xaeevil",
            b"\xff",
            b"0101801234",
            b"user 010180-1234",
            b"010180 1234",
        ] {
            assert!(OnBehalfOf::parse(bad).is_err(), "{bad:?}");
        }
        assert!(OnBehalfOf::parse("x".repeat(OnBehalfOf::MAX_CHARS).as_bytes()).is_ok());
        assert!(OnBehalfOf::parse("x".repeat(OnBehalfOf::MAX_CHARS + 1).as_bytes()).is_err());
    }
}
