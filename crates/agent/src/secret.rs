//! Secret-bearing values: tokens, credentials and rendered headers.
//!
//! A [`SecretString`] zeroizes its bytes on drop and prints as `***`, so a token or an API key
//! cannot reach a log line through `Debug` or `Display` by accident. Whoever needs the value
//! asks for it explicitly with [`SecretString::expose`].

use std::fmt;

use zeroize::Zeroizing;

/// A string that is wiped from memory when dropped and never printed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(value: impl Into<String>) -> SecretString {
        SecretString(Zeroizing::new(value.into()))
    }

    /// The value itself; the caller takes care not to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> SecretString {
        SecretString(Zeroizing::new(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let secret = SecretString::new("sk-very-secret");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.expose(), "sk-very-secret");
    }
}
