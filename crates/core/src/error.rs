//! The boundary error of the core: what a request can fail with, in a handful of kinds.
//!
//! Only the server maps these to HTTP statuses (one `match`), so nothing here knows HTTP.
//! Messages are written for the person reading the client's output; they never contain
//! secret values. Internal errors keep their detail for the log and show the client only
//! "internal error".

use std::fmt;

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The barrier is sealed: every request but the seal/unseal/health family fails.
    Sealed,
    /// Missing, invalid or expired token, or an ACL denial.
    PermissionDenied(String),
    /// Malformed or invalid input; the message says what is wrong.
    InvalidRequest(String),
    /// Nothing at this path. `data` is returned alongside for the few endpoints that do
    /// (a KV v2 read of a deleted version carries its metadata).
    NotFound { data: Option<Map<String, Value>> },
    /// No mount or engine route serves this path.
    UnsupportedPath(String),
    /// The path exists but not for this operation (verb).
    UnsupportedOperation(String),
    /// A rate-limit or lease-count quota rejected the request.
    RateLimited {
        message: String,
        retry_after_seconds: u64,
    },
    /// The storage backend cannot be reached; nothing was written.
    Unavailable(String),
    /// The request body is over the configured limit.
    TooLarge,
    /// No enabled audit device could record the request, so it was refused (fail closed).
    AuditFailed,
    /// Something broke inside Ward. The detail is for the log, not the client.
    Internal(String),
}

impl Error {
    pub fn not_found() -> Self {
        Error::NotFound { data: None }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidRequest(message.into())
    }

    pub fn denied() -> Self {
        Error::PermissionDenied("permission denied".into())
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Error::Internal(detail.into())
    }

    /// The messages the client sees, as Vault's `errors` list.
    pub fn client_messages(&self) -> Vec<String> {
        match self {
            Error::Sealed => vec!["Vault is sealed".into()],
            Error::PermissionDenied(m) | Error::InvalidRequest(m) => vec![m.clone()],
            Error::NotFound { .. } => Vec::new(),
            Error::UnsupportedPath(p) => vec![format!("{p}: unsupported path")],
            Error::UnsupportedOperation(p) => vec![format!("{p}: unsupported operation")],
            Error::RateLimited { message, .. } => vec![message.clone()],
            Error::Unavailable(_) => {
                vec!["storage unavailable; the request was not applied".into()]
            }
            Error::TooLarge => vec!["request body too large".into()],
            Error::AuditFailed => vec![crate::audit::NO_AUDIT_MESSAGE.into()],
            Error::Internal(_) => vec!["internal error".into()],
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Internal(detail) => write!(f, "internal error: {detail}"),
            Error::Unavailable(detail) => write!(f, "storage unavailable: {detail}"),
            Error::NotFound { .. } => write!(f, "not found"),
            other => write!(f, "{}", other.client_messages().join(", ")),
        }
    }
}

impl std::error::Error for Error {}

impl From<ward_storage::StorageError> for Error {
    fn from(e: ward_storage::StorageError) -> Self {
        match e {
            ward_storage::StorageError::Unavailable(m) => Error::Unavailable(m),
            ward_storage::StorageError::Invalid(m) => Error::Internal(m),
        }
    }
}
