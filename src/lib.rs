//! overblik keeps the cross-authority case and benefit indexes that the
//! caseworkers' overview (SAPA) and the citizens' overview (Borgerblikket)
//! read from.
//!
//! Data flows one way. Ingest: Kafka ([`ingest`]) → decode and validate
//! ([`events`]) → project ([`projection`]) → store ([`store`]). See
//! `ARCHITECTURE.md` for the map and the invariants each stage keeps.

pub mod access;
pub mod advis;
pub mod agreements;
pub mod api;
pub mod audit;
pub mod borgerblikket;
pub mod broker;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod domain;
pub mod events;
pub mod fuzzing;
pub mod identity;
pub mod ingest;
pub mod lookup;
pub mod metrics;
pub mod projection;
pub mod rebuild;
pub mod retention;
pub mod service_agreements;
pub mod simulator;
pub mod store;

/// Generated gRPC and protobuf code (`proto/overblik/v1`).
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("overblik.v1");

    /// The encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("overblik_descriptor");
}
