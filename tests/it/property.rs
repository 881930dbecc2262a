//! The property behind the field rules: every message the decoder accepts
//! is stored by both backends without error and reads back equal — the
//! event's bytes, the aggregate's state and every text cell of the
//! projections — however unusual its (valid) text.

use std::collections::BTreeMap;
use std::sync::Arc;

use overblik::events::{DecodeLimits, Event, EventKind, decode};
use overblik::projection::{Aggregate, Decoded, Origin, Outcome, Prior, Transition, apply};
use overblik::simulator::Rng;
use overblik::simulator::samples::{message, string_pointers};
use overblik::store::rows::{RowSet, Val};
use overblik::store::schema::ColType;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Backend, TestDb, stored_aggregates};

/// Characters that are valid but unusual: multi-byte and astral, combining
/// marks, zero-width and direction marks, noncharacters, private use, the
/// replacement character, quotes, backslashes and SQL metacharacters.
const ALPHABET: &[char] = &[
    'a',
    'Z',
    '0',
    ' ',
    'æ',
    'ø',
    'Å',
    'ß',
    'ı',
    '€',
    '中',
    '\'',
    '"',
    '\\',
    '%',
    '_',
    ';',
    '-',
    '/',
    '\u{a0}',
    '\u{301}',
    '\u{200b}',
    '\u{200e}',
    '\u{202e}',
    '\u{2028}',
    '\u{feff}',
    '\u{fffd}',
    '\u{fffe}',
    '\u{ffff}',
    '\u{e000}',
    '\u{d7ff}',
    '😀',
    '𝄞',
    '\u{10ffff}',
];

/// The lifecycle of one aggregate per family, in version order.
const CHAINS: &[&[EventKind]] = {
    use EventKind as K;
    &[
        &[K::CaseImported, K::CaseUpdated, K::CaseStatusChanged],
        &[K::ControlCaseOpened, K::ControlCaseStepRecorded, K::ControlCaseClosed],
        &[K::GrantAwarded, K::GrantChanged, K::GrantEnded],
        &[K::PaymentEffectuated, K::PaymentCorrected],
        &[
            K::EmploymentRegistered,
            K::EmploymentTargetGroupAssigned,
            K::EmploymentActivityStarted,
            K::EmploymentActivityEnded,
            K::EmploymentDeregistered,
        ],
        &[K::IncomeReported],
        &[K::AnnualAssessmentIssued],
        &[K::PreliminaryAssessmentIssued],
        &[K::PersonControlRecorded],
        &[K::DigitalLogbookRecorded],
        &[K::SelfEmploymentReported],
        &[K::PensionRightsReported],
    ]
};

fn random_text(rng: &mut Rng, len: usize, prose: bool) -> String {
    let mut chars: Vec<char> = (0..len).map(|_| *rng.pick(ALPHABET)).collect();
    if prose && len > 2 {
        chars[1] = *rng.pick(&['\t', '\n', '\r']);
    }
    let mut s: String = chars.into_iter().collect();
    if s.trim().is_empty() {
        s.push('x');
    }
    s
}

/// A message with its text fields (not its ids, which tie events together)
/// replaced by random valid text: kept only where the decoder accepts it.
fn mutate(rng: &mut Rng, v: Value, key: &[u8], mutated: &mut usize) -> Value {
    let mut v = v;
    for pointer in string_pointers(&v["data"]) {
        let pointer = format!("/data{pointer}");
        if pointer.ends_with("id") || !rng.chance(0.8) {
            continue;
        }
        let prose = pointer.ends_with("/reason") || pointer.ends_with("/paid_note");
        for len in [*rng.pick(&[1usize, 2, 7, 50, 64, 100, 255, 1024]), 20] {
            let mut candidate = v.clone();
            *candidate.pointer_mut(&pointer).unwrap() = json!(random_text(rng, len, prose));
            if decode(&serde_json::to_vec(&candidate).unwrap(), Some(key), &DecodeLimits::default()).is_ok() {
                v = candidate;
                *mutated += 1;
                break;
            }
        }
    }
    v
}

async fn accepted_messages_are_stored_and_read_back_equal(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut rng = Rng::new(97);
    let mut items = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let mut payloads = BTreeMap::new();
    let mut mutated = 0;
    for _ in 0..40 {
        for chain in CHAINS {
            let agg = Uuid::new_v4();
            let key = agg.to_string().into_bytes();
            for (i, &kind) in chain.iter().enumerate() {
                let v = mutate(&mut rng, message(kind, Uuid::new_v4(), agg, i as i64 + 1), &key, &mut mutated);
                let payload = serde_json::to_vec(&v).unwrap();
                let event = decode(&payload, Some(&key), &DecodeLimits::default()).expect("mutations stay valid");
                payloads.insert(event.id, payload.clone());
                events.push(event);
                let origin = Origin { topic: Arc::from("overblik.property"), partition: 0, offset: items.len() as i64 };
                items.push(Decoded::new(
                    origin,
                    Prior::New,
                    Some(key.clone().into()),
                    payload.into(),
                    &DecodeLimits::default(),
                ));
            }
        }
    }
    assert!(mutated > 1000, "only {mutated} text fields were varied");
    // Through the one write path, in batches, as the consumer would.
    for chunk in items.chunks(250) {
        let plan = overblik::ingest::commit_batch(&store, chunk.to_vec(), &[], &DecodeLimits::default())
            .await
            .expect("every accepted message is stored without error");
        assert!(plan.outcomes.iter().all(|o| *o == Outcome::Applied), "{:?}", plan.outcomes);
    }

    // What the projector computes in memory…
    let mut expected: BTreeMap<Uuid, Aggregate> = BTreeMap::new();
    for e in &events {
        let current = expected.remove(&e.aggregate_id);
        match apply(current, e.clone()).1.expect("the chains apply") {
            Transition::Upsert(a) => expected.insert(a.id, a),
            Transition::Delete => None,
        };
    }
    // …is what the store gives back: states,
    let stored = stored_aggregates(&store).await;
    assert_eq!(stored.len(), expected.len());
    for (id, a) in &expected {
        assert_eq!(stored.get(id), Some(&(a.version, a.state.to_json())), "aggregate {id}");
    }
    // the events' bytes,
    let mut read = 0;
    let mut after = None;
    loop {
        let page = store.events_by_aggregate(i64::MAX, after, None, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.aggregate_id, last.aggregate_version));
        for e in &page {
            let id =
                events.iter().find(|x| x.aggregate_id == e.aggregate_id && x.aggregate_version == e.aggregate_version);
            assert_eq!(Some(&e.payload), id.and_then(|x| payloads.get(&x.id)), "event bytes read back equal");
            read += 1;
        }
    }
    assert_eq!(read, events.len());
    // and every text cell of every projection table.
    let mut rows = RowSet::default();
    expected.values().for_each(|a| rows.add(a));
    let dump = store.dump_projections().await.unwrap();
    for (i, t) in overblik::store::schema::tables(false) {
        let mut want: Vec<(usize, String)> = rows.tables[i]
            .iter()
            .flat_map(|r| {
                r.iter()
                    .enumerate()
                    .filter_map(|(j, v)| if let Val::Text(s) = v { Some((j, s.to_string())) } else { None })
            })
            .collect();
        let mut got: Vec<(usize, String)> = dump[t.name]
            .iter()
            .flat_map(|r| {
                r.iter()
                    .enumerate()
                    .filter(|(j, _)| t.columns[*j].ty == ColType::Text)
                    .filter_map(|(j, v)| v.clone().map(|s| (j, s)))
            })
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "text cells of {}", t.name);
    }
}
crate::both_backends!(accepted_messages_are_stored_and_read_back_equal);
