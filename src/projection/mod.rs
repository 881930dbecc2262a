//! Project: decoded events + the stored state of their aggregates → the row
//! changes one transaction writes.
//!
//! Pure: no clock, no I/O. [`apply`] decides what one event does to one
//! aggregate; [`plan`] applies a batch under the version rules (apply,
//! duplicate, park on a gap, un-park in order) and counts every message's
//! disposition.

mod apply;
mod batch;
pub mod state;

pub use apply::{Rules, Transition, apply, apply_under};
pub use batch::{
    AggregateWrite, Appended, Context, Counts, DeadLetter, Decoded, Deletion, MessageBytes, Origin, Outcome, Parked,
    PartitionKey, Plan, Prior, ResolveError, accept_gap, drain, drop_parked, fingerprint, plan,
};
pub use state::{Aggregate, State};

#[cfg(test)]
mod tests;
