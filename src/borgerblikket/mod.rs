//! Borgerblikket as each authority configures it, and the monthly call
//! statistics it keeps. Pure: the settings and their one validation path
//! (`settings`), what a citizen is shown of a row under its owning
//! authority's settings (`rule`), and which buckets a call counts in
//! (`stats`). The store keeps both; `api` and `cli` change and read them;
//! `lookup::mine` applies them.

pub mod rule;
pub mod settings;
pub mod stats;

pub use rule::{Configs, MyCase};
pub use settings::{Document, Refused, Settings};
pub use stats::{Bucket, CallKind, Month, MonthlyCount, Outcome};

#[cfg(test)]
mod tests;
