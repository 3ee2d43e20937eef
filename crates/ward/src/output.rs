//! How the client verbs print: `-format=table` (the default, Vault's `Key  Value` tables),
//! `-format=json` (the server's JSON, pretty-printed) and `-format=yaml` (the same tree as
//! YAML), plus `-field=NAME`, which prints one value bare for scripts.
//!
//! The YAML emitter is a small one of our own: it only ever writes JSON values (no anchors,
//! tags or multi-document streams), and quoting every string that could be read back as
//! anything else is simpler than a YAML library's dependency tree.

use serde_json::{Map, Value};

use crate::client::CliError;

/// The output format chosen with `-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
    Yaml,
}

impl Format {
    /// `-format=...`, then `WARD_FORMAT`/`VAULT_FORMAT`, then table.
    pub(crate) fn parse(flag: Option<&str>) -> Result<Format, CliError> {
        let chosen = flag
            .map(str::to_string)
            .or_else(|| crate::env_var(&["WARD_FORMAT", "VAULT_FORMAT"]));
        match chosen.as_deref() {
            None | Some("table") => Ok(Format::Table),
            Some("json") => Ok(Format::Json),
            Some("yaml") | Some("yml") => Ok(Format::Yaml),
            Some(other) => Err(CliError::usage(format!(
                "invalid -format={other}: use table, json or yaml"
            ))),
        }
    }

    /// Prints a value as JSON or YAML. Callers handle `Table` themselves.
    pub(crate) fn print(self, value: &Value) {
        match self {
            Format::Yaml => print!("{}", to_yaml(value)),
            Format::Json | Format::Table => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
            ),
        }
    }

    pub(crate) fn is_table(self) -> bool {
        self == Format::Table
    }
}

/// Prints `Key  Value` rows under a header, aligned as Vault does.
pub(crate) fn print_table(rows: &[(String, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(3).max(3);
    println!("{:<width$}    Value", "Key");
    println!("{:<width$}    -----", "---");
    for (key, value) in rows {
        println!("{key:<width$}    {value}");
    }
}

/// Prints rows of columns with a header and a dashed rule, as `secrets list` does.
pub(crate) fn print_columns(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.len());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}    "));
            }
        }
        println!("{}", text.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    line(header.iter().map(|h| "-".repeat(h.len())).collect());
    for row in rows {
        line(row.clone());
    }
}

/// The rows of a JSON object, values shown as Vault's Go CLI shows them.
pub(crate) fn rows(map: &Map<String, Value>) -> Vec<(String, String)> {
    map.iter().map(|(k, v)| (k.clone(), display(v))).collect()
}

/// A value as a table cell: strings bare, lists as `[a b]`, maps as `map[k:v]`, null `n/a`.
pub(crate) fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "n/a".into(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(display).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(map) => format!(
            "map[{}]",
            map.iter()
                .map(|(k, v)| format!("{k}:{}", display(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

/// Prints one field bare: strings as they are, anything else as JSON (or YAML).
pub(crate) fn print_field(format: Format, value: &Value) {
    match (format, value) {
        (Format::Table, Value::String(s)) => println!("{s}"),
        (Format::Table, other) => println!("{}", display(other)),
        (format, value) => format.print(value),
    }
}

/// Seconds as Vault prints durations: `768h`, `1h30m`, `45s`.
pub(crate) fn duration(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".into();
    }
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    let mut text = String::new();
    if h > 0 {
        text.push_str(&format!("{h}h"));
    }
    if m > 0 {
        text.push_str(&format!("{m}m"));
    }
    if s > 0 {
        text.push_str(&format!("{s}s"));
    }
    text
}

/// A JSON value as a YAML document.
pub(crate) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_node(&mut out, value, 0);
    out
}

fn write_node(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                pad(out, indent);
                out.push_str(&yaml_key(key));
                out.push(':');
                write_after_key(out, item, indent);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                pad(out, indent);
                out.push('-');
                write_after_dash(out, item, indent);
            }
        }
        scalar => {
            pad(out, indent);
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

fn write_after_key(out: &mut String, value: &Value, indent: usize) {
    if is_collection(value) {
        out.push('\n');
        write_node(out, value, indent + 2);
    } else {
        out.push(' ');
        out.push_str(&yaml_scalar(value));
        out.push('\n');
    }
}

fn write_after_dash(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            // The first key shares the dash's line; the rest align under it.
            for (i, (key, item)) in map.iter().enumerate() {
                if i == 0 {
                    out.push(' ');
                } else {
                    pad(out, indent + 2);
                }
                out.push_str(&yaml_key(key));
                out.push(':');
                write_after_key(out, item, indent + 2);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_node(out, value, indent + 2);
        }
        scalar => {
            out.push(' ');
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

fn is_collection(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn yaml_key(key: &str) -> String {
    if is_plain(key) {
        key.to_string()
    } else {
        quote(key)
    }
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if is_plain(s) => s.clone(),
        Value::String(s) => quote(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A JSON string literal is a valid YAML double-quoted scalar.
fn quote(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// Whether a string can be written unquoted and still read back as the same string: no
/// indicator characters where YAML gives them meaning, and nothing YAML 1.1 or 1.2 would
/// read as a bool, null or number.
fn is_plain(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    if text.trim() != text || text.contains(": ") || text.contains(" #") || text.ends_with(':') {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@`~".contains(first) && !(first == '-' && text.len() > 1) {
        return false;
    }
    // A leading digit may read back as a number, a date or a time (YAML 1.1).
    if text.starts_with("- ") || text.starts_with("---") || first.is_ascii_digit() {
        return false;
    }
    if !text
        .chars()
        .all(|c| c.is_alphanumeric() || " _-./:@=+()$^<>;~".contains(c))
    {
        return false;
    }
    let lower = text.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "~" | ".inf" | ".nan"
    ) {
        return false;
    }
    let numeric = text.trim_start_matches(['-', '+']);
    !(numeric.parse::<f64>().is_ok()
        || numeric.starts_with("0x")
        || numeric.starts_with("0o")
        || numeric.starts_with('.') && numeric[1..].parse::<f64>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_of_nested_values() {
        let value = json!({
            "data": {"password": "s3cret", "port": "5432", "list": ["a", "true"], "empty": {}},
            "lease_duration": 0,
            "renewable": false,
            "warnings": null,
            "items": [{"a": 1, "b": [1, 2]}, "x: y"],
        });
        assert_eq!(
            to_yaml(&value),
            "data:\n  empty: {}\n  list:\n    - a\n    - \"true\"\n  password: s3cret\n  port: \"5432\"\n\
             items:\n  - a: 1\n    b:\n      - 1\n      - 2\n  - \"x: y\"\n\
             lease_duration: 0\nrenewable: false\nwarnings: null\n"
        );
    }

    #[test]
    fn yaml_quotes_what_would_read_back_differently() {
        for text in [
            "",
            " lead",
            "yes",
            "No",
            "1e3",
            "-5",
            "#x",
            "a: b",
            "line\nbreak",
            "@x",
            "2024-01-01",
        ] {
            assert!(!is_plain(text), "{text:?}");
        }
        for text in ["secret/data/app", "wrs.abc", "-x", "hello world", "a=b"] {
            assert!(is_plain(text), "{text:?}");
        }
        assert_eq!(yaml_scalar(&json!("line\nbreak")), "\"line\\nbreak\"");
    }

    #[test]
    fn durations_and_cells() {
        assert_eq!(duration(2_764_800), "768h");
        assert_eq!(duration(5400), "1h30m");
        assert_eq!(duration(45), "45s");
        assert_eq!(display(&json!(["a", "b"])), "[a b]");
        assert_eq!(display(&json!({"k": "v"})), "map[k:v]");
    }
}
