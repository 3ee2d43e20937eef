//! The secrets kernel of Ward: storage barrier, seal, router and mounts, tokens, policies,
//! leases (expiration), wrapping, audit, rate-limit quotas, metrics, alerts and the `sys/`
//! backend.
//!
//! The core sees no HTTP: the server turns a request into a [`request::Request`] and hands
//! it to [`Core::handle_request`]. Engines see only [`engine`]'s API.

pub mod alerts;
pub mod approvals;
pub mod audit;
pub mod barrier;
pub mod cidr;
pub mod clock;
mod core;
pub mod duration;
pub mod engine;
pub mod error;
mod expiration;
pub mod identity;
pub mod metrics;
pub mod mounts;
pub mod operator;
pub mod policy_store;
pub mod quotas;
pub mod request;
mod seal;
pub mod secret;
pub mod shamir;
mod sys;
pub mod token;
pub mod view;
mod wrapping;

pub use crate::core::{Core, CoreConfig};
pub use engine::{Engine, EngineContext, EngineRequest, EngineResponse, Operation};
pub use error::Error;
pub use view::StorageView;
