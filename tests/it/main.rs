//! Integration tests. One test binary, so the suite links once.
//!
//! Storage tests run on both backends; PostgreSQL comes from
//! `OVERBLIK_TEST_DATABASE_URL`, which the test command provides.

mod support;

mod advis;
mod bbsettings;
mod build;
mod checkpoints;
mod cli;
mod conformance;
mod crash;
mod deletion;
#[cfg(feature = "docker-tests")]
mod docker;
mod fields;
mod guard;
mod ingest;
mod outage;
mod parked;
mod property;
mod rebuild;
mod refused;
mod roles;
mod serve;
mod skat318;
mod statistics;
mod system;
mod tansu;
mod timeline;
mod tls;
