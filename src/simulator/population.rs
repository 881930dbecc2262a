//! A population for load runs: a fixed number of citizens, each with one to
//! three stories told in order.
//!
//! Unlike the demo stream, nothing here is out of order, duplicated or
//! malformed: this fills an index to look citizens up in, not a test of the
//! consumer. Citizen `i`'s CPR number and events depend only on the seed and
//! `i`, so a load driver can name existing citizens without reading the
//! store, and a loader can be stopped and run again.

use chrono::{Days, NaiveDate};

use super::Rng;
use super::stories::{self, Authority, Citizen, MUNICIPALITIES, StoryKind};
use crate::domain::PartyId;
use crate::events::Event;

/// Birth dates cycle through the days of 1940–1999, the serial number
/// counts the cycles: unique for up to `DAYS * 4000` citizens.
const FIRST_BIRTHDAY: NaiveDate = NaiveDate::from_ymd_opt(1940, 1, 1).expect("a date");
const DAYS: usize = 21_915;
/// The largest population the numbering keeps unique.
pub const MAX_CITIZENS: usize = DAYS * 4000;

/// Citizen `i`'s CPR number: a real birth date in the 1900s and a serial
/// whose first digit (0–3) reads as that century.
pub fn cpr(i: usize) -> PartyId {
    assert!(i < MAX_CITIZENS, "population numbering exhausted");
    let born = FIRST_BIRTHDAY + Days::new((i % DAYS) as u64);
    let cycle = i / DAYS;
    let serial = (cycle % 4) * 1000 + cycle / 4;
    let digits = format!("{}{serial:04}", born.format("%d%m%y"));
    PartyId::parse(&format!("{}{digits}", PartyId::CPR_PREFIX)).expect("a valid population CPR")
}

/// One generator per citizen, so any citizen can be told on its own.
fn rng_of(seed: u64, i: usize) -> Rng {
    Rng::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The municipality citizen `i` lives in (without telling their stories).
pub fn municipality(seed: u64, i: usize) -> Authority {
    *rng_of(seed, i).pick(MUNICIPALITIES)
}

/// Citizen `i` and the events of their stories, each aggregate's in version
/// order.
pub fn citizen_events(seed: u64, i: usize) -> (Citizen, Vec<Event>) {
    let mut rng = rng_of(seed, i);
    let municipality = *rng.pick(MUNICIPALITIES);
    let citizen = Citizen { party: cpr(i), municipality };
    let stories = match rng.range(0, 99) {
        0..=44 => 1,
        45..=79 => 2,
        _ => 3,
    };
    let mut events = Vec::new();
    for _ in 0..stories {
        let kind = StoryKind::pick(&mut rng);
        let start = NaiveDate::from_ymd_opt(2016, 1, 4).expect("a date") + Days::new(rng.range(0, 3900) as u64);
        events.extend(stories::tell(&mut rng, kind, &citizen, start));
    }
    (citizen, events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_valid_and_stable() {
        let mut seen = std::collections::HashSet::new();
        for i in (0..200_000).chain([MAX_CITIZENS - 1]) {
            assert!(seen.insert(cpr(i)), "citizen {i} repeats a CPR number");
        }
        assert_eq!(cpr(0).urn(), "urn:oio:cpr-nr:0101400000");
        assert_eq!(cpr(DAYS).urn(), "urn:oio:cpr-nr:0101401000");
    }

    #[test]
    fn a_citizen_is_told_the_same_way_every_time_and_applies_cleanly() {
        let (a, ea) = citizen_events(7, 123);
        let (b, eb) = citizen_events(7, 123);
        assert_eq!(a.party, b.party);
        assert_eq!(a.municipality.cvr, municipality(7, 123).cvr);
        assert_eq!(
            ea.iter().map(|e| e.encode()).collect::<Vec<_>>(),
            eb.iter().map(|e| e.encode()).collect::<Vec<_>>()
        );
        for i in 0..500 {
            let (c, events) = citizen_events(7, i);
            assert!(!events.is_empty());
            let mut state: std::collections::HashMap<uuid::Uuid, crate::projection::Aggregate> = Default::default();
            for e in events {
                assert_eq!(e.subject, c.party);
                let current = state.remove(&e.aggregate_id);
                assert_eq!(e.aggregate_version, current.as_ref().map_or(0, |a| a.version) + 1);
                match crate::projection::apply(current, e).1 {
                    Ok(crate::projection::Transition::Upsert(a)) => {
                        state.insert(a.id, a);
                    }
                    Ok(crate::projection::Transition::Delete) => {}
                    Err(r) => panic!("refused: {}", r.rejection),
                }
            }
        }
    }
}
