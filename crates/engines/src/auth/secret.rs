//! Secret-bearing strings (passwords, secret ids, JWTs, client secrets, reviewer JWTs): a
//! newtype whose `Debug` shows `***` and whose memory is wiped on drop, so a secret can be
//! neither logged by accident nor left behind in freed memory.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

#[derive(Clone, Default, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that needs it (a hash, a header, a compare).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The secret in a request field: a string, or nothing when absent or empty.
pub(crate) fn field(
    data: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<Secret>, ward_core::Error> {
    match data.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(Secret::new(s.clone()))),
        Some(_) => Err(ward_core::Error::invalid(format!(
            "field \"{key}\" must be a string"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "hunter2");
    }
}
