//! Secret-bearing request fields (passwords, secret ids, JWTs, client secrets, reviewer JWTs),
//! read into core's [`Secret`]: redacted in `Debug`, wiped on drop.

pub(crate) use ward_core::secret::Secret;

/// The secret in a request field: a string, or nothing when absent or empty.
pub(crate) fn field(
    data: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<Secret>, ward_core::Error> {
    match data.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(Secret::new(s.as_str()))),
        Some(_) => Err(ward_core::Error::invalid(format!(
            "field \"{key}\" must be a string"
        ))),
    }
}
