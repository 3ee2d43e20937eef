//! Ward's policy language: Vault-compatible ACL policies, parsed and evaluated.
//!
//! This crate owns everything about policies that needs no storage and no
//! network: reading HCL1 ([`hcl`], also used by the server for its config
//! file), parsing policies in HCL or JSON ([`parse`]), durations as Vault
//! writes them ([`parse_duration`]), templated paths ([`IdentityContext`]) and
//! the evaluator ([`Acl`]). Core stores policies, finds a token's policies and
//! identity, and decides which paths are root-protected; the CLI uses this
//! crate offline for `ward policy fmt/validate/test/explain`: the canonical
//! printer ([`format`](mod@format)), the repository layout ([`repository`]), the linter
//! ([`lint`]), the test runner ([`testing`]), pattern reasoning ([`pattern`](mod@pattern))
//! and the root-protected path list ([`sudo::SUDO_PATHS`]). It depends on nothing in
//! Ward, and on nothing but `serde_json`.

pub mod acl;
pub mod duration;
pub mod format;
pub mod hcl;
pub mod lint;
pub mod pattern;
pub mod policy;
pub mod repository;
pub mod sudo;
pub mod template;
pub mod testing;

pub use acl::{
    compare_patterns, Acl, Decision, Denial, Explanation, MatchKind, Operation, PriorityRule,
    Request, RuleSummary,
};
pub use duration::{parse_duration, DurationError};
pub use policy::{
    normalize_name, parse, Capability, CapabilitySet, ControlGroup, ControlGroupFactor, PathRule,
    Policy, PolicyError,
};
pub use sudo::{requires_sudo, SudoPath, SUDO_PATHS};
pub use template::{
    is_templated, resolve_template, AliasContext, GroupContext, IdentityContext, TemplateError,
};
