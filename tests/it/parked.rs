//! Parked gaps an operator resolves: `overblik parked list|resolve|
//! decisions` as a user runs them, with counts that still sum, and the
//! aggregate a reused event id strands.

use std::process::Command;
use std::time::Duration;

use overblik::events::Reason;
use overblik::events::body::{CaseStatus, DocumentKind};
use overblik::store::{DeadLetterFilter, ParkedBudget, Store};
use serde_json::Value;
use uuid::Uuid;

use crate::build::{Citizen, encoded};
use crate::support::{Backend, RunningConsumer, TestDb, TestProducer, broker, ingest_settings, wait_consumed};

fn overblik(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_overblik"))
        .args(args)
        .args(["--database-url", url])
        .env("OVERBLIK_LOG", "warn")
        .env("USER", "driftsvagt")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(url: &str, args: &[&str]) -> Value {
    let (code, out, err) = overblik(url, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
}

fn listed(list: &Value, aggregate: Uuid) -> Option<&Value> {
    list.as_array().unwrap().iter().find(|r| r["aggregate_id"] == aggregate.to_string())
}

async fn applied_version(store: &Store, aggregate: Uuid) -> Option<i64> {
    crate::support::stored_aggregates(store).await.get(&aggregate).map(|x| x.0)
}

async fn parked_gaps_are_listed_and_resolved_both_ways(backend: Backend) {
    let broker = broker(2);
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let consumer = RunningConsumer::start(ingest_settings(&bootstrap, "parked"), store.clone());
    let producer = TestProducer::new(&bootstrap);
    let c = Citizen::new("1111701234");
    let send = |partition: i32, events: &[&overblik::events::Event]| {
        for (k, p) in encoded(events) {
            producer.send_to("overblik.ky", partition, Some(&k), &p);
        }
    };
    let (accepted, dropped, holder, stranded) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    // `accepted` lost its v2 for good: v3, v4 and v6 wait (v6 also for v5).
    send(
        0,
        &[
            &c.case_import(accepted, "2024-01-02"),
            &c.status(accepted, 3, CaseStatus::Oplyst, "2024-01-10"),
            &c.status(accepted, 4, CaseStatus::Afgjort, "2024-01-20"),
            &c.status(accepted, 6, CaseStatus::Afsluttet, "2024-01-30"),
        ],
    );
    // `dropped` never had a v1.
    send(
        1,
        &[
            &c.status(dropped, 2, CaseStatus::Oplyst, "2024-02-10"),
            &c.status(dropped, 3, CaseStatus::Afgjort, "2024-02-20"),
        ],
    );
    // `stranded`'s v1 reuses the event id of `holder`'s v1, which came
    // first through the other partition.
    let holder_v1 = c.case_import(holder, "2024-03-01");
    send(0, &[&holder_v1]);
    wait_consumed(&store, &producer.flush(), Duration::from_secs(60)).await;
    let mut stranded_v1 = c.case_import(stranded, "2024-03-02");
    stranded_v1.id = holder_v1.id;
    let stranded_v2 = c.status(stranded, 2, CaseStatus::Oplyst, "2024-03-10");
    let stranded_v3 = c.status(stranded, 3, CaseStatus::Afgjort, "2024-03-20");
    send(1, &[&stranded_v1, &stranded_v2, &stranded_v3]);
    let ends = producer.flush();
    let sent: i64 = ends.values().sum();
    wait_consumed(&store, &ends, Duration::from_secs(60)).await;

    let s = store.status().await.unwrap();
    assert_eq!((s.consumed, s.applied, s.parked, s.dead_lettered), (sent, 2, 7, 1));
    assert!(s.oldest_parked_at.is_some(), "status shows the oldest parked age");

    // The stranded aggregate's dead letter names the aggregate holding the id.
    let dead = store.dead_letters(&DeadLetterFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, Reason::DuplicateEventId.as_str());
    assert_eq!(dead[0].aggregate_id, Some(stranded));
    assert!(dead[0].detail.contains(&holder.to_string()), "the detail names the holder: {}", dead[0].detail);

    // The list: every parked aggregate, what it waits for, where from.
    let list = json(&db.url, &["parked", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 3, "{list:#}");
    let a = listed(&list, accepted).expect("the accepted aggregate is listed");
    assert_eq!(
        (a["current_version"].as_i64(), a["waiting_for"].as_i64(), a["parked"].as_i64()),
        (Some(1), Some(2), Some(3))
    );
    let versions: Vec<i64> = a["sources"].as_array().unwrap().iter().map(|s| s["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, vec![3, 4, 6]);
    assert_eq!(a["sources"][0]["topic"], "overblik.ky");
    assert_eq!(a["sources"][0]["partition"], 0);
    assert_eq!(a["next_in_line"], false);
    let st = listed(&list, stranded).expect("the stranded aggregate is listed");
    assert_eq!((st["waiting_for"].as_i64(), st["parked"].as_i64()), (Some(1), Some(2)));
    assert_eq!(st["dead_letters"][0][1], Reason::DuplicateEventId.as_str(), "its refused v1 is pointed out");
    let (_, text, _) = overblik(&db.url, &["parked", "list"]);
    assert!(text.contains(&stranded.to_string()) && text.contains("DUPLICATE_EVENT_ID"), "{text}");
    let recent = json(&db.url, &["parked", "list", "--older-than", "1h", "--json"]);
    assert_eq!(recent.as_array().unwrap().len(), 0, "nothing has waited an hour");

    // Refusals change nothing: not the first parked version, no reason,
    // a reason with a control character.
    let (code, _, err) = overblik(
        &db.url,
        &["parked", "resolve", "--aggregate", &accepted.to_string(), "--accept-from", "4", "--reason", "x"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("first parked version"), "{err}");
    let (code, _, _) = overblik(&db.url, &["parked", "resolve", "--aggregate", &accepted.to_string(), "--drop"]);
    assert_ne!(code, 0, "a reason is required");
    let (code, _, err) = overblik(
        &db.url,
        &["parked", "resolve", "--aggregate", &accepted.to_string(), "--drop", "--reason", "a\u{1b}[2Jb"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("control or invisible"), "{err}");
    assert_eq!(store.parked_count(accepted).await.unwrap(), 3);

    // Accept: 3 and 4 apply as if 2 had come; 6 still waits for 5.
    let done = json(
        &db.url,
        &[
            "parked",
            "resolve",
            "--aggregate",
            &accepted.to_string(),
            "--accept-from",
            "3",
            "--reason",
            "KY confirms version 2 was never issued",
            "--json",
        ],
    );
    assert_eq!((done["applied"].as_i64(), done["still_parked"].as_i64()), (Some(2), Some(1)));
    assert_eq!(applied_version(&store, accepted).await, Some(4));

    // Drop: both of `dropped`'s events become dead letters with the reason.
    let done = json(
        &db.url,
        &["parked", "resolve", "--aggregate", &dropped.to_string(), "--drop", "--reason", "test data", "--json"],
    );
    assert_eq!((done["dead_lettered"].as_i64(), done["still_parked"].as_i64()), (Some(2), Some(0)));
    let dropped_letters = store
        .dead_letters(&DeadLetterFilter {
            reason: Some(Reason::DroppedByOperator.as_str().into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dropped_letters.len(), 2);
    assert!(dropped_letters.iter().all(|d| d.aggregate_id == Some(dropped) && d.detail.contains("test data")));
    assert_eq!(applied_version(&store, dropped).await, None);

    // Counts moved, none appeared or vanished.
    let s = store.status().await.unwrap();
    assert_eq!((s.consumed, s.applied, s.parked, s.dead_lettered), (sent, 4, 3, 3));
    assert_eq!(s.parked_rows, 3);

    // The decisions are in the event store, with who and why.
    let decisions = json(&db.url, &["parked", "decisions", "--json"]);
    let decisions = decisions.as_array().unwrap();
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[0]["aggregate_id"], accepted.to_string());
    assert_eq!(decisions[0]["decision"], "accept_gap");
    assert_eq!(decisions[0]["from_version"], 3);
    assert_eq!(decisions[0]["applied"], 2);
    assert_eq!(decisions[0]["operator"], "driftsvagt");
    assert_eq!(decisions[0]["reason"], "KY confirms version 2 was never issued");
    assert_eq!(
        (decisions[1]["decision"].as_str(), decisions[1]["dead_lettered"].as_i64()),
        (Some("drop_parked"), Some(2))
    );

    // The stranded aggregate is freed by replaying its v1 with an id of its
    // own: v2 and v3 follow in the same transaction.
    let mut fixed = stranded_v1.clone();
    fixed.id = Uuid::new_v4();
    let outcomes = overblik::ingest::replay::replay(
        &store,
        &[dead[0].id],
        &overblik::ingest::replay::Replacement { payload: Some(fixed.encode()), key: None },
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(outcomes[0].1, overblik::projection::Outcome::Applied);
    assert_eq!(applied_version(&store, stranded).await, Some(3));

    consumer.stop().await.unwrap();
    let s = store.status().await.unwrap();
    assert_eq!((s.consumed, s.applied, s.parked, s.dead_lettered), (sent, 7, 1, 2));
    let left = json(&db.url, &["parked", "list", "--json"]);
    assert_eq!(left.as_array().unwrap().len(), 1, "only `accepted`'s v6 still waits: {left:#}");
}
crate::both_backends!(parked_gaps_are_listed_and_resolved_both_ways);

async fn a_load_over_budget_is_cut_short_and_drained(backend: Backend) {
    let broker = broker(1);
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::new(backend).await;
    // Three parked rows per load: a batch loads part of what waits, and the
    // drain after its commit applies the rest, three at a time.
    let small = ParkedBudget { rows: 3, bytes: 1 << 20 };
    let store = db.store().await.with_parked_budget(small);
    let consumer = RunningConsumer::start(ingest_settings(&bootstrap, "budget"), store.clone());
    let producer = TestProducer::new(&bootstrap);
    let c = Citizen::new("0303801234");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (a_low, b_low) = (a.min(b), a.max(b));
    let mut events = Vec::new();
    // Seven changes that each apply to the case once v1 is there (status
    // changes can't: they only move forward, and there are three steps).
    for v in 2..=8 {
        events.push(c.document(a_low, v, &format!("Bilag {v}"), DocumentKind::Document, None));
    }
    events.push(c.status(b_low, 2, CaseStatus::Oplyst, "2024-01-10"));
    for (k, p) in encoded(&events.iter().collect::<Vec<_>>()) {
        producer.send("overblik.ky", Some(&k), &p);
    }
    wait_consumed(&store, &producer.flush(), Duration::from_secs(60)).await;
    assert_eq!(store.status().await.unwrap().parked_rows, 8);

    // The first aggregate (in id order) is cut short, the other loads
    // nothing; both count as truncated.
    let mut tx = store.begin().await.unwrap();
    let (loaded, truncated) = tx.load_parked(&[a_low, b_low], small).await.unwrap();
    assert_eq!(
        loaded.iter().map(|p| (p.aggregate_id, p.aggregate_version)).collect::<Vec<_>>(),
        vec![(a_low, 2), (a_low, 3), (a_low, 4)]
    );
    assert_eq!(truncated, [a_low, b_low].into_iter().collect());
    // A byte budget below two payloads loads one.
    let (loaded, _) = tx.load_parked(&[a_low], ParkedBudget { rows: 100, bytes: 1 }).await.unwrap();
    assert_eq!(loaded.len(), 1);
    // Within budget: whole, nothing truncated.
    let (loaded, truncated) = tx.load_parked(&[a_low, b_low], ParkedBudget::BATCH).await.unwrap();
    assert_eq!((loaded.len(), truncated.len()), (8, 0));
    drop(tx);

    // The missing v1 arrives: its batch applies v1–v4, the drain v5–v8.
    for (k, p) in encoded(&[&c.case_import(a_low, "2024-01-02")]) {
        producer.send("overblik.ky", Some(&k), &p);
    }
    wait_consumed(&store, &producer.flush(), Duration::from_secs(60)).await;
    consumer.stop().await.unwrap();
    assert_eq!(applied_version(&store, a_low).await, Some(8));
    let s = store.status().await.unwrap();
    assert_eq!((s.applied, s.parked, s.parked_rows), (8, 1, 1));
    assert_eq!(store.parked_count(a_low).await.unwrap(), 0);
    // Nothing of the other aggregate is next in line: a drain applies nothing.
    assert_eq!(overblik::ingest::parked::drain(&store, &[b_low], &Default::default()).await.unwrap(), 0);
}
crate::both_backends!(a_load_over_budget_is_cut_short_and_drained);
