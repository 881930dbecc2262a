//! The source simulator: a realistic, deterministic demo stream of
//! CloudEvents across UDK, KY, the job centres and SKAT, as the source
//! systems would publish them — and as badly as they sometimes do.
//!
//! Memory stays bounded for any length: a fixed number of stories are in
//! flight at once, each a short queue of events, and the stream interleaves
//! them. The same seed and length give the same bytes.

mod malformed;
pub mod population;
pub mod publish;
mod rng;
pub mod samples;
pub mod stories;

use std::collections::VecDeque;

use chrono::{Days, NaiveDate};

use crate::domain::PartyId;
use crate::events::Reason;
pub use rng::Rng;
use stories::{Citizen, MUNICIPALITIES, StoryKind, demo_cpr};

/// How many stories are told at once.
const IN_FLIGHT: usize = 64;
/// Chance that the next event of an aggregate is sent before the current one.
const SWAP_CHANCE: f64 = 0.03;
/// Chance that a recently sent message is sent again.
const DUPLICATE_CHANCE: f64 = 0.02;

/// What a demo message should become once consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A valid event, sent for the first time: it applies (perhaps after
    /// waiting parked for an earlier version sent after it).
    Event,
    /// A message sent before, again: a duplicate.
    Duplicate,
    /// A malformed message: a dead letter with this reason.
    Malformed(Reason),
}

#[derive(Clone, Debug)]
pub struct DemoMessage {
    pub topic: &'static str,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub expect: Expect,
}

/// The demo stream: `len` messages from `seed`.
pub struct DemoStream {
    rng: Rng,
    remaining: usize,
    malformed_ratio: f64,
    citizens: Vec<Citizen>,
    stories: Vec<(StoryKind, VecDeque<crate::events::Event>)>,
    recent: VecDeque<DemoMessage>,
    /// Earlier versions held back after their successor was sent first,
    /// each with the `remaining` count at which it is due.
    held_back: VecDeque<(usize, DemoMessage)>,
    malformed_sent: usize,
}

impl DemoStream {
    pub fn new(seed: u64, len: usize) -> DemoStream {
        let mut rng = Rng::new(seed);
        let population = (len / 25).clamp(20, 200_000);
        // The first citizen is the documented demo citizen, living in
        // Aarhus, so there is someone known to look up.
        let demo = PartyId::parse(&format!("{}{}", PartyId::CPR_PREFIX, stories::DEMO_CITIZEN)).expect("a valid CPR");
        let mut seen = std::collections::HashSet::from([demo]);
        let mut citizens = Vec::with_capacity(population);
        citizens.push(Citizen { party: demo, municipality: MUNICIPALITIES[1] });
        while citizens.len() < population {
            let party = demo_cpr(&mut rng);
            if seen.insert(party) {
                let municipality = *rng.pick(MUNICIPALITIES);
                citizens.push(Citizen { party, municipality });
            }
        }
        DemoStream {
            rng,
            remaining: len,
            malformed_ratio: 0.0,
            citizens,
            stories: Vec::with_capacity(IN_FLIGHT),
            recent: VecDeque::with_capacity(64),
            held_back: VecDeque::new(),
            malformed_sent: 0,
        }
    }

    /// Mixes in malformed messages at this ratio (0.0–1.0), one of each
    /// malformed class in turn.
    pub fn with_malformed_ratio(mut self, ratio: f64) -> DemoStream {
        self.malformed_ratio = ratio.clamp(0.0, 1.0);
        self
    }

    fn new_story(&mut self) -> (StoryKind, VecDeque<crate::events::Event>) {
        let kind = StoryKind::pick(&mut self.rng);
        let citizen = self.rng.pick(&self.citizens).clone();
        // Stories start between 2016 and 2026, so some cases closed long
        // enough ago for the retention sweep to remove them.
        let start = NaiveDate::from_ymd_opt(2016, 1, 4).unwrap() + Days::new(self.rng.range(0, 3900) as u64);
        (kind, stories::tell(&mut self.rng, kind, &citizen, start).into())
    }

    fn next_event(&mut self) -> DemoMessage {
        while self.stories.len() < IN_FLIGHT {
            let story = self.new_story();
            self.stories.push(story);
        }
        let i = self.rng.range(0, self.stories.len() as i64 - 1) as usize;
        let (kind, queue) = &mut self.stories[i];
        let topic = kind.topic();
        let mut event = queue.pop_front().expect("stories are never empty here");
        // Now and then the next version of the aggregate overtakes this one,
        // which is held back for a few messages: the consumer parks the
        // later version until the earlier arrives. Held-back messages are
        // always sent before the stream ends, so every gap closes.
        let room = self.remaining > self.held_back.len() + 25;
        if room
            && self.rng.chance(SWAP_CHANCE)
            && let Some(j) = queue.iter().position(|e| e.aggregate_id == event.aggregate_id)
        {
            let later = queue.remove(j).expect("found");
            let earlier = std::mem::replace(&mut event, later);
            let due = self.remaining - self.rng.range(1, 20) as usize;
            self.held_back.push_back((due, message(topic, &earlier)));
        }
        if queue.is_empty() {
            self.stories.swap_remove(i);
        }
        message(topic, &event)
    }
}

fn message(topic: &'static str, event: &crate::events::Event) -> DemoMessage {
    DemoMessage {
        topic,
        key: event.aggregate_id.to_string().into_bytes(),
        payload: event.encode(),
        expect: Expect::Event,
    }
}

impl Iterator for DemoStream {
    type Item = DemoMessage;

    fn next(&mut self) -> Option<DemoMessage> {
        if self.remaining == 0 {
            return None;
        }
        if let Some((due, _)) = self.held_back.front()
            && (self.remaining <= *due || self.remaining <= self.held_back.len())
        {
            self.remaining -= 1;
            return self.held_back.pop_front().map(|(_, m)| m);
        }
        self.remaining -= 1;
        if self.malformed_ratio > 0.0 && self.rng.chance(self.malformed_ratio) {
            let m = malformed::message(&mut self.rng, self.malformed_sent);
            self.malformed_sent += 1;
            return Some(m);
        }
        if !self.recent.is_empty() && self.rng.chance(DUPLICATE_CHANCE) {
            let mut again = self.rng.pick(self.recent.make_contiguous()).clone();
            again.expect = Expect::Duplicate;
            return Some(again);
        }
        let m = self.next_event();
        if self.recent.len() == 64 {
            self.recent.pop_front();
        }
        self.recent.push_back(m.clone());
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{DecodeLimits, decode};

    #[test]
    fn same_seed_same_bytes() {
        let a: Vec<_> = DemoStream::new(3, 300).with_malformed_ratio(0.1).map(|m| m.payload).collect();
        let b: Vec<_> = DemoStream::new(3, 300).with_malformed_ratio(0.1).map(|m| m.payload).collect();
        assert_eq!(a, b);
        let c: Vec<_> = DemoStream::new(4, 300).map(|m| m.payload).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn every_message_decodes_as_expected() {
        let limits = DecodeLimits::default();
        let mut kinds = std::collections::HashSet::new();
        let mut reasons = std::collections::HashSet::new();
        for m in DemoStream::new(11, 5000).with_malformed_ratio(0.05) {
            let decoded = decode(&m.payload, Some(&m.key), &limits);
            match (&m.expect, decoded) {
                (Expect::Event | Expect::Duplicate, Ok(e)) => {
                    kinds.insert(e.kind());
                }
                (Expect::Malformed(r), Err(rej)) => {
                    assert_eq!(*r, rej.reason, "{}", rej.detail);
                    reasons.insert(*r);
                }
                (expect, got) => panic!("{expect:?} but decoded to {got:?}"),
            }
        }
        // Every event type the story tellers know appears in a stream this long.
        for k in crate::events::EventKind::ALL {
            let rare = matches!(
                k,
                crate::events::EventKind::ControlCaseDeleted
                    | crate::events::EventKind::EmploymentDeleted
                    | crate::events::EventKind::AnnualAssessmentDeleted
                    | crate::events::EventKind::PreliminaryAssessmentDeleted
                    | crate::events::EventKind::PersonControlDeleted
                    | crate::events::EventKind::DigitalLogbookDeleted
                    | crate::events::EventKind::SelfEmploymentDeleted
                    | crate::events::EventKind::PensionRightsDeleted
            );
            assert!(rare || kinds.contains(k), "{k:?} never generated");
        }
        let every: std::collections::HashSet<_> = (0..malformed::CLASSES)
            .map(|n| match malformed::message(&mut Rng::new(0), n).expect {
                Expect::Malformed(r) => r,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(reasons, every, "every malformed class appears");
    }

    #[test]
    fn a_stream_applies_cleanly_in_version_order() {
        // Folding every first delivery per aggregate in version order must
        // never be refused: the stories only tell possible histories.
        let limits = DecodeLimits::default();
        let mut by_agg: std::collections::HashMap<uuid::Uuid, Vec<crate::events::Event>> = Default::default();
        for m in DemoStream::new(5, 20_000).filter(|m| m.expect == Expect::Event) {
            let e = decode(&m.payload, Some(&m.key), &limits).unwrap();
            by_agg.entry(e.aggregate_id).or_default().push(e);
        }
        for events in by_agg.values_mut() {
            events.sort_by_key(|e| e.aggregate_version);
            let mut cur = None;
            for (i, e) in events.iter().enumerate() {
                assert_eq!(e.aggregate_version, i as i64 + 1, "versions are consecutive");
                match crate::projection::apply(cur.take(), e.clone()).1 {
                    Ok(crate::projection::Transition::Upsert(a)) => cur = Some(a),
                    Ok(crate::projection::Transition::Delete) => cur = None,
                    Err(r) => panic!("{:?} refused: {}", e.kind(), r.rejection),
                }
            }
        }
    }
}
