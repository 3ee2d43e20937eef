//! Request bodies: reading them under the listener's size limit and parsing them as JSON
//! objects.
//!
//! The limit is enforced while the body streams in (and up front from `Content-Length`), so
//! an oversized request never sits in memory whole. Parsing is strict: the body must be one
//! JSON object, with no trailing data and no duplicate keys at any depth (Go keeps the last
//! duplicate, other parsers the first; refusing them leaves no room for two readers of the
//! same request to disagree). Error messages describe the problem and its position but never
//! echo any of the body back.

use std::fmt;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Over the listener's `max_request_size`: 413.
    TooLarge,
    /// The connection failed while reading: 400.
    Read,
    /// Not a JSON object: 400 with this message.
    Invalid(String),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge => f.write_str("request body too large"),
            BodyError::Read => f.write_str("failed to read the request body"),
            BodyError::Invalid(message) => f.write_str(message),
        }
    }
}

/// Reads a whole body, failing as soon as it exceeds `limit` bytes (`None`: no limit).
pub(crate) async fn read<B>(
    body: B,
    content_length: Option<u64>,
    limit: Option<u64>,
) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(limit) = limit else {
        return body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|_| BodyError::Read);
    };
    if content_length.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Read),
    }
}

/// Parses a body as a JSON object. An empty (or all-whitespace) body is `{}`.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, BodyError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(Value::Object(map))) => Ok(map),
        Ok(Strict(_)) => Err(BodyError::Invalid(
            "failed to parse JSON input: the request body must be a JSON object".into(),
        )),
        // serde_json's syntax and end-of-input messages name the problem and its position
        // ("trailing characters at line 1 column 9"), never the input; the only custom
        // message is the duplicate-key one below, which does not name the key either.
        Err(e) => Err(BodyError::Invalid(format!(
            "failed to parse JSON input: {e}"
        ))),
    }
}

/// A JSON value that refuses duplicate object keys while it is parsed.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let Strict(value) = access.next_value()?;
            if map.contains_key(&key) {
                return Err(de::Error::custom("duplicate key in JSON object"));
            }
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;
    use serde_json::json;

    use super::*;

    #[test]
    fn objects_parse_and_everything_else_is_refused() {
        assert_eq!(parse_object(b"").expect("empty"), Map::new());
        assert_eq!(parse_object(b" \n").expect("blank"), Map::new());
        let map = parse_object(br#"{"a": {"b": [1, 2.5, null, true]}, "c": "d"}"#).expect("valid");
        assert_eq!(
            Value::Object(map),
            json!({"a": {"b": [1, 2.5, null, true]}, "c": "d"})
        );
        for bad in [
            &b"{\"a\": 1"[..],
            b"{\"a\": 1} trailing",
            b"[1, 2]",
            b"\"secret-value\"",
            b"42",
            b"{\"a\": \"\xff\xfe\"}",
            b"{\"a\": 1, \"a\": 2}",
            b"{\"x\": {\"a\": 1, \"a\": 2}}",
            b"{'a': 1}",
        ] {
            match parse_object(bad) {
                Err(BodyError::Invalid(message)) => {
                    assert!(
                        message.starts_with("failed to parse JSON input"),
                        "{message}"
                    );
                    assert!(
                        !message.contains("secret-value") && !message.contains("trailing\""),
                        "{message}"
                    );
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bad)),
            }
        }
    }

    #[tokio::test]
    async fn limit_applies_to_declared_and_streamed_lengths() {
        let body = || Full::new(Bytes::from(vec![b' '; 100]));
        assert_eq!(
            read(body(), Some(100), Some(10)).await,
            Err(BodyError::TooLarge)
        );
        assert_eq!(read(body(), None, Some(10)).await, Err(BodyError::TooLarge));
        assert_eq!(
            read(body(), None, Some(100)).await.map(|b| b.len()),
            Ok(100)
        );
        assert_eq!(read(body(), None, None).await.map(|b| b.len()), Ok(100));
    }
}
