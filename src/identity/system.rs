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
//! A system may name the person it calls for in `x-onbehalfofuser`. That
//! value is the caller's own text, so it is validated before it goes
//! anywhere: one printable line, bounded, nothing invisible, and never a
//! personal number (a user id, not a citizen).

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
