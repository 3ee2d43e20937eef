//! The HCL1 reader: every syntax form Vault policies use, the JSON mapping,
//! positions in errors, and hostile input.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use ward_policy::hcl::{self, Number, ValueKind, MAX_DEPTH};

fn to_json(text: &str) -> serde_json::Value {
    match hcl::parse(text) {
        Ok(body) => body.to_json(),
        Err(error) => panic!("{text:?} should parse: {error}"),
    }
}

fn error(text: &str) -> String {
    match hcl::parse(text) {
        Ok(body) => panic!("{text:?} should fail, parsed as {:?}", body.to_json()),
        Err(error) => error.to_string(),
    }
}

#[test]
fn attributes_of_every_value_type() {
    let text = r#"
        string = "hello"
        int = 42
        negative = -7
        float = 1.5
        exponent = 1e3
        hex = 0x1F
        yes = true
        no = false
        list = ["a", 1, true, ["nested"]]
        empty = []
    "#;
    assert_eq!(
        to_json(text),
        json!({
            "string": "hello", "int": 42, "negative": -7, "float": 1.5, "exponent": 1000.0,
            "hex": 31, "yes": true, "no": false, "list": ["a", 1, true, ["nested"]], "empty": []
        })
    );
}

#[test]
fn string_escapes() {
    let body = hcl::parse(r#"s = "q\"b\\n\n t\t u\u00e9 U\U0001F600 slash\/""#).unwrap();
    assert_eq!(
        body.get("s").unwrap().string().unwrap(),
        "q\"b\\n\n t\t u\u{e9} U\u{1F600} slash/"
    );
    assert!(error(r#"s = "bad \q escape""#).contains("unknown escape sequence `\\q`"));
    assert!(error(r#"s = "\u12""#).contains("needs 4 hex digits"));
    assert!(error(r#"s = "\uD800""#).contains("not a valid character"));
    assert_eq!(
        error("s = \"no end\nx = 1"),
        "string not terminated before end of line at line 1, column 5"
    );
    // HCL1 interpolations may contain quotes; the text is kept as written.
    let body = hcl::parse(r#"s = "${lookup("a")} ok""#).unwrap();
    assert_eq!(
        body.get("s").unwrap().string().unwrap(),
        r#"${lookup("a")} ok"#
    );
}

#[test]
fn heredocs_plain_and_indented() {
    let text = "a = <<EOF\nline one\n  line two\nEOF\nb = <<-EOT\n    indented\n      more\n    EOT\nc = 1\n";
    assert_eq!(
        to_json(text),
        json!({"a": "line one\n  line two\n", "b": "indented\n  more\n", "c": 1})
    );
    // An indented form whose lines are not all indented keeps them as they are.
    assert_eq!(to_json("x = <<-E\n  a\nb\n  E\n"), json!({"x": "  a\nb\n"}));
    assert_eq!(to_json("x = <<E\nE\n"), json!({"x": ""}));
    assert!(error("x = <<EOF\nnever closed\n").starts_with("heredoc not terminated"));
    assert!(error("x = <<EOF trailing\n").contains("must be followed by a newline"));
    // Vault's documentation example of a policy in a heredoc.
    let text = "policy = <<EOT\npath \"secret/*\" {\n  capabilities = [\"read\"]\n}\nEOT\n";
    let body = hcl::parse(text).unwrap();
    let inner = hcl::parse(body.get("policy").unwrap().string().unwrap()).unwrap();
    assert_eq!(
        inner.to_json(),
        json!({"path": {"secret/*": {"capabilities": ["read"]}}})
    );
}

#[test]
fn comments_of_all_three_kinds() {
    let text = "# hash\n// slashes\n/* block\n spanning */ a = 1 # trailing\nb = /* inline */ 2\n";
    assert_eq!(to_json(text), json!({"a": 1, "b": 2}));
    assert_eq!(
        error("a = 1\n/* never closed"),
        "comment not terminated (missing `*/`) at line 2, column 1"
    );
}

#[test]
fn lists_with_trailing_commas_and_newlines() {
    let text = "l = [\n  \"a\",\n  \"b\",\n]\nm = [{x = 1}, {y = 2},]\n";
    assert_eq!(
        to_json(text),
        json!({"l": ["a", "b"], "m": [{"x": 1}, {"y": 2}]})
    );
    assert_eq!(
        error("l = [\"a\" \"b\"]"),
        "expected ',' or ']' in list, found string \"b\" at line 1, column 10"
    );
}

#[test]
fn objects_separated_by_commas_newlines_or_nothing() {
    // Vault's documented one-liner, rejected by HCL2 parsers.
    let text = r#"allowed_parameters = { "bar" = ["zip"] "*" = [] }"#;
    assert_eq!(
        to_json(text),
        json!({"allowed_parameters": {"bar": ["zip"], "*": []}})
    );
    let text = "o = { a = 1, b = 2 }\np = {\n c = 3\n d = 4\n}\n";
    assert_eq!(
        to_json(text),
        json!({"o": {"a": 1, "b": 2}, "p": {"c": 3, "d": 4}})
    );
    // Top-level items need no separators either.
    assert_eq!(
        to_json("a = 1 b = 2, c = 3"),
        json!({"a": 1, "b": 2, "c": 3})
    );
}

#[test]
fn control_group_with_labelled_blocks_inside_an_object() {
    let text = r#"
path "secret/foo" {
  capabilities = ["read", "update"]
  control_group = {
    ttl = "4h"
    factor "ops" {
      controlled_capabilities = ["update"]
      identity {
        group_names = ["managers", "leads"]
        approvals = 2
      }
    }
  }
}"#;
    assert_eq!(
        to_json(text),
        json!({"path": {"secret/foo": {
            "capabilities": ["read", "update"],
            "control_group": {"ttl": "4h", "factor": {"ops": {
                "controlled_capabilities": ["update"],
                "identity": {"group_names": ["managers", "leads"], "approvals": 2}
            }}}
        }}})
    );
    // The one-line form from the brief.
    let text = r#"control_group = { ttl = "4h" factor "ops" { identity { group_names = ["a"] approvals = 1 } } }"#;
    assert_eq!(
        to_json(text),
        json!({"control_group": {"ttl": "4h", "factor": {"ops": {"identity": {"group_names": ["a"], "approvals": 1}}}}})
    );
}

#[test]
fn repeated_keys_are_kept_in_order_and_merge_in_json() {
    let text = r#"
path "a" { capabilities = ["read"] }
path "b" { capabilities = ["list"] }
path "a" { capabilities = ["update"] }
x = 1
x = 2
"#;
    let body = hcl::parse(text).unwrap();
    let labels: Vec<&str> = body
        .get_all("path")
        .map(|item| item.labels[0].as_str())
        .collect();
    assert_eq!(labels, ["a", "b", "a"]);
    assert_eq!(
        body.to_json(),
        json!({
            "path": {
                "a": [{"capabilities": ["read"]}, {"capabilities": ["update"]}],
                "b": {"capabilities": ["list"]}
            },
            "x": [1, 2]
        })
    );
}

#[test]
fn blocks_with_several_or_identifier_labels() {
    let text =
        "resource aws_instance \"web\" { ami = \"x\" }\nlistener tcp { address = \":8200\" }\n";
    let body = hcl::parse(text).unwrap();
    assert_eq!(body.items()[0].labels, ["aws_instance", "web"]);
    assert!(body.items()[0].block);
    assert_eq!(
        body.to_json(),
        json!({"resource": {"aws_instance": {"web": {"ami": "x"}}}, "listener": {"tcp": {"address": ":8200"}}})
    );
}

#[test]
fn positions_of_items_and_values() {
    let text = "a = 1\n  path \"x\" {\n    capabilities = [\"read\",\n      \"list\"]\n  }\n";
    let body = hcl::parse(text).unwrap();
    let path = body.get("path").unwrap();
    assert_eq!((path.line, path.column), (2, 3));
    let capabilities = path.object().unwrap().get("capabilities").unwrap();
    assert_eq!((capabilities.line, capabilities.column), (3, 5));
    let list = capabilities.list().unwrap();
    assert_eq!((list[1].line, list[1].column), (4, 7));
    // Columns count characters, not bytes.
    let body = hcl::parse("é = \"ü\" b = 1").unwrap();
    assert_eq!(body.get("b").unwrap().column, 9);
}

#[test]
fn syntax_errors_name_what_and_where() {
    assert_eq!(
        error("a = 1\n\npath \"x\" [\"read\"]"),
        "expected '=' or '{' after key \"path\", found '[' at line 3, column 10"
    );
    assert_eq!(
        error("path \"x\" {\n  capabilities = [\"read\"]\n"),
        "expected '}' to close the object opened here at line 1, column 10"
    );
    assert_eq!(
        error("a = read"),
        "expected a value, found identifier `read` (strings must be quoted) at line 1, column 5"
    );
    assert_eq!(
        error("foo bar = 1"),
        "expected '{' after the labels of block \"foo\", found '=' at line 1, column 9"
    );
    assert_eq!(
        error("= 1"),
        "expected a key, found '=' at line 1, column 1"
    );
    assert_eq!(
        error("a = }"),
        "expected a value, found '}' at line 1, column 5"
    );
    assert_eq!(
        error("a = 1 }"),
        "expected a key, found '}' at line 1, column 7"
    );
    assert_eq!(
        error("a = @"),
        "unexpected character '@' at line 1, column 5"
    );
    assert_eq!(
        error("a = 12abc"),
        "invalid number (letters directly after digits) at line 1, column 5"
    );
    assert_eq!(
        error("a = 99999999999999999999"),
        "integer out of range at line 1, column 5"
    );
    assert_eq!(
        error("a ="),
        "expected a value, found end of input at line 1, column 4"
    );
}

#[test]
fn nesting_depth_is_limited() {
    let ok = format!("a = {}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(hcl::parse(&ok).is_ok());
    let bomb = format!("a = {}", "[".repeat(100_000));
    assert!(error(&bomb).starts_with("nesting too deep"));
    let bomb = "a { ".repeat(100_000);
    assert!(error(&bomb).starts_with("nesting too deep"));
    let bomb = format!("a = {}", "{ b = ".repeat(100_000));
    assert!(error(&bomb).starts_with("nesting too deep"));
}

#[test]
fn large_flat_input_parses_in_linear_time() {
    // 20 000 stanzas: quadratic behaviour would take minutes here.
    let mut text = String::new();
    for index in 0..20_000 {
        text.push_str(&format!(
            "path \"secret/{index}/*\" {{ capabilities = [\"read\"] }}\n"
        ));
    }
    let body = hcl::parse(&text).unwrap();
    assert_eq!(body.items().len(), 20_000);
}

#[test]
fn decoder_helpers() {
    let text = "listener \"tcp\" {\n  address = \"127.0.0.1:8200\"\n  tls_disable = true\n  workers = 4\n  bogus = 1\n}\n";
    let body = hcl::parse(text).unwrap();
    let listener = body.get("listener").unwrap();
    let inner = listener.object().unwrap();
    assert_eq!(
        inner.get("address").unwrap().string().unwrap(),
        "127.0.0.1:8200"
    );
    assert!(inner.get("tls_disable").unwrap().bool().unwrap());
    assert_eq!(inner.get("workers").unwrap().integer().unwrap(), 4);
    assert_eq!(inner.get("workers").unwrap().number().unwrap(), 4.0);
    assert_eq!(
        inner
            .check_keys(&["address", "tls_disable", "workers"])
            .unwrap_err()
            .to_string(),
        "unknown key `bogus` at line 5, column 3"
    );
    assert_eq!(
        inner
            .get("workers")
            .unwrap()
            .string()
            .unwrap_err()
            .to_string(),
        "`workers` must be a string, found a number at line 4, column 3"
    );
    assert!(body.check_keys(&["listener"]).is_ok());
    assert!(matches!(
        inner.get("workers").unwrap().value.kind,
        ValueKind::Number(Number::Int(4))
    ));
}

#[test]
fn json_round_trip_into_a_body() {
    let json = json!({"path": {"a/*": {"capabilities": ["read"], "n": 1.5}}});
    let body = hcl::Body::from_json(&json).unwrap();
    assert_eq!(body.to_json(), json);
    assert!(hcl::Body::from_json(&json!({"a": null})).is_err());
    assert!(hcl::Body::from_json(&json!([1])).is_err());
}

#[test]
fn empty_documents() {
    assert_eq!(to_json(""), json!({}));
    assert_eq!(to_json("  # only a comment\n"), json!({}));
    assert_eq!(to_json("a {}"), json!({"a": {}}));
}
