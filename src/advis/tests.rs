use chrono::{TimeZone, Utc};
use uuid::Uuid;

use super::*;
use crate::domain::Cvr;

fn kle(s: &str) -> Kle {
    Kle::parse(s).unwrap()
}

fn holder(roles: &[&str], sensitivity: Sensitivity) -> Employee {
    Employee {
        user_id: "user@aarhus".into(),
        name: None,
        authority: Cvr::parse("55133018").unwrap(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        kle: KleConstraint::any(),
        sensitivity,
        org_unit: None,
        own_cpr: None,
        it_system: None,
    }
}

fn notice(area: DataArea, authority: &str, sensitivity: Sensitivity) -> Notice {
    Notice {
        id: Uuid::new_v4(),
        subscription_id: Uuid::new_v4(),
        event_id: Uuid::new_v4(),
        aggregate_id: Uuid::new_v4(),
        area,
        event_type: "dk.overblik.case.updated.v1".into(),
        kind: NoticeKind::Changed,
        occurred_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        row_authority: Cvr::parse(authority).unwrap(),
        class: Class { kles: vec![kle("32.18.04")], sensitivity },
    }
}

#[test]
fn kle_prefixes_are_whole_groups() {
    for ok in ["32", "32.18", "32.18.04"] {
        assert!(KlePrefix::parse(ok).is_some(), "{ok}");
    }
    for bad in ["", "3", "32.", "32.1", "32.18.04.01", "ab", "32*", "32.18.044"] {
        assert!(KlePrefix::parse(bad).is_none(), "{bad}");
    }
    let p = KlePrefix::parse("32.18").unwrap();
    assert!(p.covers(&kle("32.18.04")));
    assert!(!p.covers(&kle("32.19.04")));
}

#[test]
fn a_notice_id_is_the_same_for_the_same_subscription_and_event() {
    let (s, e) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(notice_id(s, e), notice_id(s, e));
    assert_ne!(notice_id(s, e), notice_id(Uuid::new_v4(), e));
    assert_ne!(notice_id(s, e), notice_id(s, Uuid::new_v4()));
    assert_eq!(notice_id(s, e).get_version_num(), 5);
}

#[test]
fn delivery_needs_the_role_the_authority_and_the_class() {
    let catalogue = Catalogue::built_in();
    let n = notice(DataArea::Sager, "55133018", Sensitivity::Confidential);
    assert_eq!(deliverable(&n, &holder(&["Se sager"], Sensitivity::Sensitive), &catalogue), Ok(()));
    assert_eq!(deliverable(&n, &holder(&["Se ydelser"], Sensitivity::Sensitive), &catalogue), Err(Suppression::NoRole));
    let elsewhere = notice(DataArea::Sager, "35209115", Sensitivity::Confidential);
    assert_eq!(
        deliverable(&elsewhere, &holder(&["Se sager"], Sensitivity::Sensitive), &catalogue),
        Err(Suppression::OtherAuthority)
    );
    let vip = notice(DataArea::Sager, "55133018", Sensitivity::Vip);
    assert_eq!(
        deliverable(&vip, &holder(&["Se sager"], Sensitivity::Sensitive), &catalogue),
        Err(Suppression::OutOfClass)
    );
}

#[test]
fn stored_privileges_lapse_at_their_expiry() {
    let catalogue = Catalogue::built_in();
    let n = notice(DataArea::Sager, "55133018", Sensitivity::Confidential);
    let until = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    let p = Privileges::of(&holder(&["Se sager"], Sensitivity::Sensitive), until);
    let before = until - chrono::Duration::seconds(1);
    assert_eq!(deliverable_stored(&n, Some(&p), &catalogue, before), Ok(()));
    assert_eq!(deliverable_stored(&n, Some(&p), &catalogue, until), Err(Suppression::Expired));
    assert_eq!(deliverable_stored(&n, None, &catalogue, before), Err(Suppression::Unsubscribed));
}

#[test]
fn only_casework_areas_opened_by_a_role_take_subscriptions() {
    let catalogue = Catalogue::built_in();
    for a in [DataArea::Sager, DataArea::Ydelser, DataArea::Beskaeftigelse] {
        assert!(subscribable(&catalogue, a), "{a}");
    }
    // §11a and §8 hide rows by rules a notice can't keep; the SKAT areas
    // need a purpose per lookup.
    for a in [DataArea::Kontrolsager, DataArea::UdkSager, DataArea::UdkYdelser].into_iter().chain(DataArea::TAX) {
        assert!(!subscribable(&catalogue, a), "{a}");
    }
}

#[test]
fn cursors_are_sequence_numbers() {
    assert_eq!(parse_cursor(""), Some(0));
    assert_eq!(parse_cursor("42"), Some(42));
    for bad in ["-1", "x", "1.5", "99999999999999999999", " 1"] {
        assert_eq!(parse_cursor(bad), None, "{bad}");
    }
}

#[test]
fn the_cloud_event_carries_ids_only() {
    let n = notice(DataArea::Sager, "55133018", Sensitivity::Confidential);
    let v: serde_json::Value = serde_json::from_slice(&cloud_event(7, &n)).unwrap();
    assert_eq!(v["specversion"], "1.0");
    assert_eq!(v["id"], n.id.to_string());
    assert_eq!(v["type"], "dk.overblik.advis.changed");
    assert_eq!(v["data"]["cursor"], "7");
    assert!(v.get("subject").is_none());
    let data: Vec<&str> = v["data"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        data,
        ["aggregate_id", "cursor", "data_area", "event_type", "notice_id", "occurred_at", "subscription_id"]
    );
}
