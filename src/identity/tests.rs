//! Token verification: every way a token can be wrong is refused with its
//! reason; good tokens give the caller their claims describe.

use std::time::{SystemTime, UNIX_EPOCH};

use super::keys::{DEFAULT_AUDIENCE, KeyFile};
use super::*;

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn employee_claims() -> Claims {
    Claims {
        aud: DEFAULT_AUDIENCE.into(),
        sub: "mh@aarhus".into(),
        exp: now() + 3600,
        iat: Some(now()),
        name: Some("Mette Hansen".into()),
        cvr: Some("55133018".into()),
        roles: vec!["Se sager".into()],
        kle: Some(vec!["32.18.*".into(), "27.24.04".into()]),
        foelsomhed: Some(3),
        ..Default::default()
    }
}

fn setup() -> (KeyFile, Verifier) {
    let key = KeyFile::generate_dev().unwrap();
    let mut v = Verifier::new(DEFAULT_AUDIENCE);
    v.trust(&key).unwrap();
    (key, v)
}

fn bad(v: &Verifier, token: &str) -> &'static str {
    match v.verify(token) {
        Err(TokenError::Bad(why)) => why,
        other => panic!("expected a bad token, got {other:?}"),
    }
}

#[test]
fn a_good_employee_token_gives_its_privileges() {
    let (key, v) = setup();
    let Caller::Employee(e) = v.verify(&key.mint(&employee_claims()).unwrap()).unwrap() else { panic!() };
    assert_eq!(e.authority.as_str(), "55133018");
    assert!(e.has_role("Se sager") && !e.has_role("Se ydelser"));
    assert_eq!(e.sensitivity, crate::domain::Sensitivity::Sensitive);
    assert!(e.kle.allows(&Kle::parse("32.18.04").unwrap()));
    assert!(e.kle.allows(&Kle::parse("27.24.04").unwrap()));
    assert!(!e.kle.allows(&Kle::parse("27.24.08").unwrap()));
    assert!(!e.kle.allows(&Kle::parse("32.03.04").unwrap()));
}

#[test]
fn a_citizen_token_carries_only_a_cpr() {
    let (key, v) = setup();
    let claims = Claims {
        aud: DEFAULT_AUDIENCE.into(),
        sub: "citizen".into(),
        exp: now() + 600,
        iat: Some(now()),
        cpr: Some("0101801234".into()),
        ..Default::default()
    };
    assert!(
        matches!(v.verify(&key.mint(&claims).unwrap()).unwrap(), Caller::Citizen(c) if c.cpr.as_str() == "0101801234")
    );
}

#[test]
fn every_bad_token_is_refused_with_its_reason() {
    let (key, v) = setup();
    assert_eq!(bearer(None), Err(TokenError::Missing));
    assert_eq!(bearer(Some("Basic abc")), Err(TokenError::Missing));
    assert_eq!(bearer(Some("Bearer  ")), Err(TokenError::Missing));

    let expired = Claims { exp: now() - 3600, ..employee_claims() };
    assert_eq!(bad(&v, &key.mint(&expired).unwrap()), "the token has expired");
    let early = Claims { nbf: Some(now() + 3600), ..employee_claims() };
    assert_eq!(bad(&v, &key.mint(&early).unwrap()), "the token is not valid yet");
    let elsewhere = Claims { aud: "another-service".into(), ..employee_claims() };
    assert_eq!(bad(&v, &key.mint(&elsewhere).unwrap()), "the token is for another audience");

    // Signed by another key under the same key id.
    let impostor = KeyFile::generate_dev().unwrap();
    assert_eq!(bad(&v, &impostor.mint(&employee_claims()).unwrap()), "the token's signature does not verify");
    // A key nobody trusts.
    let stranger = KeyFile { kid: "stranger".into(), ..KeyFile::generate_dev().unwrap() };
    assert_eq!(bad(&v, &stranger.mint(&employee_claims()).unwrap()), "the token's key is not trusted");

    // alg: none, with the trusted key id and no signature.
    let b64 = |s: &str| base64url(s.as_bytes());
    let header = b64(r#"{"alg":"none","kid":"overblik-dev","typ":"JWT"}"#);
    let body = b64(&serde_json::to_string(&Claims { iss: key.issuer.clone(), ..employee_claims() }).unwrap());
    assert_eq!(bad(&v, &format!("{header}.{body}.")), "the token's algorithm is not accepted");

    // Garbage, and a token whose claims name neither authority nor citizen.
    assert_eq!(bad(&v, "not.a.token"), "the token is malformed");
    let nobody = Claims { cvr: None, cpr: None, ..employee_claims() };
    assert!(bad(&v, &key.mint(&nobody).unwrap()).contains("neither"));
    let bad_level = Claims { foelsomhed: Some(5), ..employee_claims() };
    assert!(bad(&v, &key.mint(&bad_level).unwrap()).contains("foelsomhed"));
}

#[test]
fn a_token_lives_at_most_the_maximum_lifetime_and_says_when_it_was_issued() {
    let (key, v) = setup();
    let century = Claims { exp: now() + 100 * 365 * 86_400, ..employee_claims() };
    assert_eq!(bad(&v, &key.mint(&century).unwrap()), "the token is valid for longer than this service accepts");
    let year_9999 = Claims { exp: 253_402_300_799, ..employee_claims() };
    assert_eq!(bad(&v, &key.mint(&year_9999).unwrap()), "the token is valid for longer than this service accepts");
    let no_iat = Claims { iat: None, ..employee_claims() };
    assert_eq!(bad(&v, &key.mint(&no_iat).unwrap()), "the token lacks a required claim");
    let future = Claims { iat: Some(now() + 3600), exp: now() + 7200, ..employee_claims() };
    assert_eq!(bad(&v, &key.mint(&future).unwrap()), "the token was issued in the future");
    let day = Claims { iat: Some(now()), exp: now() + 12 * 3600, ..employee_claims() };
    assert!(v.verify(&key.mint(&day).unwrap()).is_ok(), "exactly the maximum is accepted");
    let (key2, mut v2) = setup();
    v2 = v2.with_max_lifetime(std::time::Duration::from_secs(600));
    v2.trust(&key2).unwrap();
    assert_eq!(
        bad(&v2, &key2.mint(&employee_claims()).unwrap()),
        "the token is valid for longer than this service accepts"
    );
}

#[test]
fn the_audience_may_be_a_string_or_an_array() {
    let (key, v) = setup();
    let many = Claims { aud: Audience::Many(vec!["other".into(), DEFAULT_AUDIENCE.into()]), ..employee_claims() };
    assert!(matches!(v.verify(&key.mint(&many).unwrap()), Ok(Caller::Employee(_))));
    let none_ours = Claims { aud: Audience::Many(vec!["other".into(), "third".into()]), ..employee_claims() };
    assert_eq!(bad(&v, &key.mint(&none_ours).unwrap()), "the token is for another audience");
}

#[test]
fn claims_are_bounded() {
    let (key, v) = setup();
    let long_name = Claims { name: Some("x".repeat(10_000)), ..employee_claims() };
    assert_eq!(bad(&v, &key.mint(&long_name).unwrap()), "a claim is longer than this service accepts");
    let many_roles = Claims { roles: (0..1000).map(|i| format!("r{i}")).collect(), ..employee_claims() };
    assert_eq!(bad(&v, &key.mint(&many_roles).unwrap()), "a claim is longer than this service accepts");
}

#[test]
fn rs256_keys_verify_and_algorithm_swaps_are_refused() {
    let rsa: KeyFile = serde_json::from_str(include_str!("testdata/rsa-test-key.json")).unwrap();
    let (ed, mut v) = setup();
    v.trust(&rsa).unwrap();
    assert!(matches!(v.verify(&rsa.mint(&employee_claims()).unwrap()), Ok(Caller::Employee(_))));
    // An EdDSA token presenting the RSA key's id.
    let swapped = KeyFile { kid: rsa.kid.clone(), ..ed };
    assert_eq!(bad(&v, &swapped.mint(&employee_claims()).unwrap()), "the token's algorithm is not its key's");
}

#[test]
fn kle_patterns_are_checked() {
    assert!(KleConstraint::parse(&["32.*".into(), "32.18.*".into(), "*".into(), "32.18.04".into()]).is_ok());
    for bad in ["32", "3.*", "32.18.04.*", "32.1*", "abc"] {
        assert!(KleConstraint::parse(&[bad.into()]).is_err(), "{bad}");
    }
    let everything = KleConstraint::parse(&["*".into()]).unwrap();
    assert!(everything.allows(&Kle::parse("01.02.03").unwrap()));
    let nothing = KleConstraint::parse(&[]).unwrap();
    assert!(!nothing.allows(&Kle::parse("01.02.03").unwrap()), "an empty constraint allows nothing");
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn a_remembered_token_still_expires_and_a_tampered_one_is_checked_in_full() {
    let (key, v) = setup();
    let claims = Claims { exp: now() + 60, ..employee_claims() };
    let token = key.mint(&claims).unwrap();
    assert!(v.verify(&token).is_ok());
    assert!(v.verify_at(&token, now()).is_ok(), "remembered");
    // Past exp plus the leeway the full check allows, the remembered token
    // is refused as the full check would refuse it.
    let later = claims.exp + v.leeway_seconds as i64 + 1;
    assert_eq!(v.verify_at(&token, later), Err(TokenError::Bad("the token has expired")));
    // A token differing in one signature character is not the remembered one.
    let mut forged = token.clone().into_bytes();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(v.verify(&forged), Err(TokenError::Bad("the token's signature does not verify")));
}
