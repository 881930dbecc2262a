//! Parked events taken out of the parked table in bounded steps: an
//! operator's resolution (`overblik parked resolve`), and the drain of
//! events that are next in line but were beyond what a batch loaded.
//!
//! Each step is one transaction: load the aggregate and its first parked
//! events (within the load budget), plan with the pure planner
//! (`projection::accept_gap`, `drain`, `drop_parked`), write the plan — and,
//! for an operator's step, the decision with its reason — and commit. A step
//! that races a running consumer on the same aggregate fails its
//! compare-and-set and is tried again; nothing is applied twice.

use uuid::Uuid;

use crate::events::DecodeLimits;
use crate::projection::{self, Plan, ResolveError};
use crate::store::{Decision, OperatorDecision, Store, StoreError};

/// Attempts at a step that keeps losing to concurrent writers.
const STEP_ATTEMPTS: u32 = 5;
/// Aggregates a sweep for events next in line drains at most.
const SWEEP_LIMIT: usize = 10_000;

/// Free text an operator gives (a reason, a name): one line, printable,
/// bounded — it is stored and shown to other operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadNote {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error("{what} contains a control or invisible formatting character")]
    Control { what: &'static str },
    #[error("{what} contains what looks like a personal number; name the aggregate or the event instead")]
    PersonalNumber { what: &'static str },
}

impl Note {
    pub fn new(text: &str, what: &'static str, max: usize) -> Result<Note, BadNote> {
        let text = text.trim();
        if text.is_empty() {
            return Err(BadNote::Empty { what });
        }
        if text.chars().count() > max {
            return Err(BadNote::TooLong { what, max });
        }
        if text.chars().any(hides_or_breaks) {
            return Err(BadNote::Control { what });
        }
        if crate::events::has_personal_number(text) {
            return Err(BadNote::PersonalNumber { what });
        }
        Ok(Note(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Control characters, and the invisible ones that reorder, split or hide
/// text (bidirectional overrides, zero-width characters, line and paragraph
/// separators): none has a place in a one-line note someone reads later.
fn hides_or_breaks(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{61c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{e0000}'..='\u{e007f}'
        )
}

/// An operator's resolution of one aggregate's parked events.
#[derive(Clone, Debug)]
pub struct Resolution {
    pub aggregate: Uuid,
    pub decision: Decision,
    pub reason: Note,
    pub operator: Note,
}

/// What a resolution moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Resolved {
    pub applied: i64,
    pub dead_lettered: i64,
    /// Transactions it took.
    pub steps: u32,
    /// Parked events of the aggregate left: behind a further gap.
    pub still_parked: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveFailure {
    #[error(transparent)]
    Refused(#[from] ResolveError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One step's outcome.
struct Step {
    applied: i64,
    dead_lettered: i64,
    /// More are parked than the step loaded, and all it loaded left.
    more: bool,
}

/// Resolves an aggregate's parked events as the operator decided, in
/// bounded steps: accepting applies from the given version on until a
/// further gap; dropping dead-letters every parked event of the aggregate.
pub async fn resolve(store: &Store, r: &Resolution, limits: &DecodeLimits) -> Result<Resolved, ResolveFailure> {
    let mut done = Resolved::default();
    loop {
        let nth = if done.steps == 0 { StepOf::First } else { StepOf::Later };
        let step = with_retries(|| operator_step(store, r, nth, limits)).await?;
        done.steps += 1;
        done.applied += step.applied;
        done.dead_lettered += step.dead_lettered;
        if !step.more {
            break;
        }
    }
    done.still_parked = store.parked_count(r.aggregate).await?;
    Ok(done)
}

/// Which step of a resolution: the first applies the operator's decision,
/// later ones continue it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StepOf {
    First,
    Later,
}

async fn operator_step(
    store: &Store,
    r: &Resolution,
    nth: StepOf,
    limits: &DecodeLimits,
) -> Result<Step, ResolveFailure> {
    let mut tx = store.begin().await?;
    let current = tx.load_aggregates(&[r.aggregate]).await?.pop();
    let (parked, truncated) = tx.load_parked(&[r.aggregate], tx.parked_budget()).await?;
    if parked.is_empty() {
        return match nth {
            StepOf::First => Err(ResolveError::NothingParked.into()),
            StepOf::Later => Ok(Step { applied: 0, dead_lettered: 0, more: false }),
        };
    }
    let loaded = parked.len();
    let plan = match r.decision {
        Decision::AcceptFrom(from) if nth == StepOf::First => projection::accept_gap(current, parked, from, limits)?,
        // Later steps of an accepted gap continue where the first stopped.
        Decision::AcceptFrom(_) => projection::drain(current, parked, limits),
        Decision::Drop => projection::drop_parked(parked, r.reason.as_str()),
    };
    tx.write(&plan).await?;
    let step = Step {
        applied: plan.appended.len() as i64,
        dead_lettered: plan.dead_letters.len() as i64,
        more: truncated.contains(&r.aggregate) && plan.unparked.len() == loaded,
    };
    tx.record_operator_decision(&OperatorDecision {
        aggregate_id: r.aggregate,
        decision: r.decision,
        applied: step.applied,
        dead_lettered: step.dead_lettered,
        reason: r.reason.as_str(),
        operator: r.operator.as_str(),
    })
    .await?;
    tx.commit().await?;
    crate::metrics::METRICS.record(&plan, 0, 0.0);
    Ok(step)
}

/// Applies the parked events of `aggregates` that are next in line, in
/// bounded steps; returns how many applied.
pub async fn drain(store: &Store, aggregates: &[Uuid], limits: &DecodeLimits) -> Result<i64, StoreError> {
    let mut applied = 0;
    for &aggregate in aggregates {
        loop {
            let step = with_retries(|| drain_step(store, aggregate, limits)).await?;
            applied += step.applied;
            if !step.more || step.applied == 0 {
                break;
            }
        }
    }
    Ok(applied)
}

async fn drain_step(store: &Store, aggregate: Uuid, limits: &DecodeLimits) -> Result<Step, StoreError> {
    let mut tx = store.begin().await?;
    let current = tx.load_aggregates(&[aggregate]).await?.pop();
    let (parked, truncated) = tx.load_parked(&[aggregate], tx.parked_budget()).await?;
    let loaded = parked.len();
    let plan: Plan = projection::drain(current, parked, limits);
    if plan.unparked.is_empty() {
        return Ok(Step { applied: 0, dead_lettered: 0, more: false });
    }
    tx.write(&plan).await?;
    tx.commit().await?;
    crate::metrics::METRICS.record(&plan, 0, 0.0);
    Ok(Step {
        applied: plan.appended.len() as i64,
        dead_lettered: plan.dead_letters.len() as i64,
        more: truncated.contains(&aggregate) && plan.unparked.len() == loaded,
    })
}

/// Drains every aggregate whose first parked event is next in line — left
/// so when a process stopped between a batch and its drain. Run at start.
pub async fn drain_ready(store: &Store, limits: &DecodeLimits) -> Result<i64, StoreError> {
    let mut seen = std::collections::HashSet::new();
    let mut applied = 0;
    while seen.len() < SWEEP_LIMIT {
        let ready: Vec<Uuid> = store.parked_next_in_line(100).await?.into_iter().filter(|a| seen.insert(*a)).collect();
        if ready.is_empty() {
            break;
        }
        applied += drain(store, &ready, limits).await?;
    }
    Ok(applied)
}

/// Runs a step again while it loses to a concurrent writer.
async fn with_retries<T, E, F, Fut>(mut step: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: IsConflict,
{
    let mut attempt = 1;
    loop {
        match step().await {
            Err(e) if e.is_conflict() && attempt < STEP_ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

trait IsConflict {
    fn is_conflict(&self) -> bool;
}

impl IsConflict for StoreError {
    fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
    }
}

impl IsConflict for ResolveFailure {
    fn is_conflict(&self) -> bool {
        matches!(self, ResolveFailure::Store(StoreError::Conflict(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_one_bounded_printable_line() {
        assert_eq!(Note::new("  source fixed  ", "the reason", 20).unwrap().as_str(), "source fixed");
        assert_eq!(Note::new(" ", "the reason", 10), Err(BadNote::Empty { what: "the reason" }));
        assert_eq!(Note::new("abcdefghijk", "the reason", 10), Err(BadNote::TooLong { what: "the reason", max: 10 }));
        assert_eq!(Note::new("a\nb", "the reason", 10), Err(BadNote::Control { what: "the reason" }));
        assert_eq!(Note::new("a\u{0}b", "the reason", 10), Err(BadNote::Control { what: "the reason" }));
        assert_eq!(Note::new("a\u{1b}[2Jb", "the reason", 10), Err(BadNote::Control { what: "the reason" }));
        // Characters that reorder or split what a reader of the record sees.
        for c in ['\u{202e}', '\u{2066}', '\u{200b}', '\u{2028}', '\u{feff}', '\u{ad}', '\u{61c}', '\u{e0041}'] {
            assert_eq!(Note::new(&format!("a{c}b"), "the reason", 10), Err(BadNote::Control { what: "the reason" }));
        }
        assert_eq!(Note::new("Ærø: æøå", "the reason", 10).unwrap().as_str(), "Ærø: æøå");
        // A personal number in any shape: refused, not stored.
        for text in ["borger 0101801234", "borger 010180-1234", "borger 010180 1234"] {
            assert_eq!(Note::new(text, "the reason", 100), Err(BadNote::PersonalNumber { what: "the reason" }));
        }
        assert!(Note::new("KY ticket 4711 of 2024-05-01", "the reason", 100).is_ok());
    }
}
