//! Slicebed node manager: the per-node agent. It enrolls with a one-time token, dials out to
//! the slice service (nodes accept no inbound connections), and reconciles the slivers it is
//! told to run into containers of the local engine. The engine is the source of truth for what
//! runs: this crate keeps no state of its own beyond the enrollment files in the state dir.

pub mod access;
pub mod agent;
pub mod backoff;
pub mod clock;
pub mod connect;
pub mod convert;
pub mod desired_store;
pub mod domain;
pub mod elf;
pub mod engine_health;
pub mod enroll;
pub mod error;
pub mod fetch;
pub mod host;
pub mod identity;
pub mod image;
pub mod metrics;
pub mod node_files;
pub mod plan;
pub mod quantity;
pub mod reclaim;
pub mod reconciler;
pub mod reports;
pub mod runtime;
pub mod subnets;
pub mod usage;

pub use error::{Error, Result};

/// Version reported to the service.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
