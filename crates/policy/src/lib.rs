//! Ward's policy language: Vault-compatible ACL policies, parsed and evaluated.
//!
//! This crate owns everything about policies that needs no storage and no
//! network: reading HCL1 ([`hcl`], also used by the server for its config
//! file), parsing policies in HCL or JSON ([`parse`]), durations as Vault
//! writes them ([`parse_duration`]), templated paths ([`IdentityContext`]) and
//! the evaluator ([`Acl`]). Core stores policies, finds a token's policies and
//! identity, and decides which paths are root-protected; the CLI uses this
//! crate offline for `ward policy fmt/test/explain`. It depends on nothing in
//! Ward, and on nothing but `serde_json`.

pub mod acl;
pub mod duration;
pub mod hcl;
pub mod policy;
pub mod template;

pub use acl::{Acl, Decision, Denial, Explanation, MatchKind, Operation, Request, RuleSummary};
pub use duration::{parse_duration, DurationError};
pub use policy::{
    normalize_name, parse, Capability, CapabilitySet, ControlGroup, ControlGroupFactor, PathRule,
    Policy, PolicyError,
};
pub use template::{
    is_templated, resolve_template, AliasContext, GroupContext, IdentityContext, TemplateError,
};
