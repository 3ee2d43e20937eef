//! `ward policy fmt`: prints an HCL policy back in one canonical layout.
//!
//! The tree comes from `ward_policy::hcl` (the same parser the server uses, so what is
//! formatted is what the server reads). The layout, like Vault's `policy fmt`: two-space
//! indent, `key = value` with the `=` aligned across a run of attributes, one blank line
//! around blocks, lists on one line when they hold only plain values and the line fits in 100 columns, one item
//! per line otherwise. Formatting its own output changes nothing.
//!
//! The parser drops comments, so this module finds them in the source itself (a scanner that
//! knows strings and heredocs) and puts each back before the item that followed it, or at the
//! end of the line it trailed, or before the closing brace of its block.

use ward_policy::hcl::{Body, Item, Number, Value, ValueKind};

/// A list of plain values goes on one line when the line stays within this many columns.
const MAX_LINE: usize = 100;

/// Formats `text`; the error is the parser's, with its line and column.
pub(crate) fn format(text: &str) -> Result<String, String> {
    let body = ward_policy::hcl::parse(text).map_err(|e| e.to_string())?;
    let mut printer = Printer {
        out: String::new(),
        comments: scan_comments(text),
        next_comment: 0,
        source: text,
    };
    printer.body(&body, 0);
    printer.flush_comments(u32::MAX, 0);
    let mut out = printer.out.trim_end().to_string();
    out.push('\n');
    Ok(out)
}

struct Comment {
    line: u32,
    text: String,
    /// Code precedes it on its line.
    trailing: bool,
}

struct Printer<'a> {
    out: String,
    comments: Vec<Comment>,
    next_comment: usize,
    source: &'a str,
}

impl Printer<'_> {
    fn body(&mut self, body: &Body, indent: usize) {
        let items = body.items();
        let mut i = 0;
        while i < items.len() {
            if items[i].block {
                if i > 0 {
                    self.blank_line();
                }
                self.block(&items[i], indent);
                i += 1;
                continue;
            }
            // A run of attributes, aligned on `=`.
            let start = i;
            while i < items.len() && !items[i].block {
                i += 1;
            }
            if start > 0 {
                self.blank_line();
            }
            let run = &items[start..i];
            let width = run
                .iter()
                .map(|item| key_text(item).len())
                .max()
                .unwrap_or(0);
            for item in run {
                self.flush_comments(item.line, indent);
                let key = key_text(item);
                self.out.push_str(&" ".repeat(indent));
                self.out.push_str(&format!("{key:<width$} = "));
                self.value(&item.value, indent);
                self.trailing_comment(item.line);
                self.out.push('\n');
            }
        }
    }

    fn block(&mut self, item: &Item, indent: usize) {
        self.flush_comments(item.line, indent);
        self.out.push_str(&" ".repeat(indent));
        self.out.push_str(&key_text(item));
        for label in &item.labels {
            self.out.push(' ');
            self.out.push_str(&quote(label));
        }
        let ValueKind::Object(body) = &item.value.kind else {
            self.out.push_str(" = ");
            self.value(&item.value, indent);
            self.out.push('\n');
            return;
        };
        let close = closing_line(self.source, item.value.line, item.value.column);
        let has_comments = self.comments[self.next_comment..]
            .iter()
            .any(|c| c.line < close);
        if body.items().is_empty() && !has_comments {
            self.out.push_str(" {}");
            self.trailing_comment(item.value.line);
            self.out.push('\n');
            return;
        }
        self.out.push_str(" {");
        self.trailing_comment(item.value.line);
        self.out.push('\n');
        self.body(body, indent + 2);
        self.flush_comments(close, indent + 2);
        self.out.push_str(&" ".repeat(indent));
        self.out.push_str("}\n");
    }

    fn value(&mut self, value: &Value, indent: usize) {
        match &value.kind {
            ValueKind::String(s) => self.out.push_str(&quote(s)),
            ValueKind::Number(Number::Int(n)) => self.out.push_str(&n.to_string()),
            ValueKind::Number(Number::Float(f)) => self.out.push_str(&format!("{f:?}")),
            ValueKind::Bool(b) => self.out.push_str(&b.to_string()),
            ValueKind::List(items) => {
                let column = self.out.len() - self.out.rfind('\n').map_or(0, |i| i + 1);
                match one_line_list(items) {
                    Some(text) if column + text.len() <= MAX_LINE => self.out.push_str(&text),
                    _ => {
                        self.out.push_str("[\n");
                        for item in items {
                            self.out.push_str(&" ".repeat(indent + 2));
                            self.value(item, indent + 2);
                            self.out.push_str(",\n");
                        }
                        self.out.push_str(&" ".repeat(indent));
                        self.out.push(']');
                    }
                }
            }
            ValueKind::Object(body) => {
                if body.items().is_empty() {
                    self.out.push_str("{}");
                } else {
                    self.out.push_str("{\n");
                    self.body(body, indent + 2);
                    self.out.push_str(&" ".repeat(indent));
                    self.out.push('}');
                }
            }
        }
    }

    /// Writes the comments that start before `line`, each on its own line.
    fn flush_comments(&mut self, line: u32, indent: usize) {
        while let Some(comment) = self.comments.get(self.next_comment) {
            if comment.line >= line {
                break;
            }
            let mut lines = comment.text.lines();
            if let Some(first) = lines.next() {
                self.out.push_str(&" ".repeat(indent));
                self.out.push_str(first);
                self.out.push('\n');
            }
            for rest in lines {
                self.out.push_str(rest);
                self.out.push('\n');
            }
            self.next_comment += 1;
        }
    }

    /// Appends a comment that trailed code on `line`, if the next one does.
    fn trailing_comment(&mut self, line: u32) {
        if let Some(comment) = self.comments.get(self.next_comment) {
            if comment.trailing && comment.line == line && !comment.text.contains('\n') {
                self.out.push(' ');
                self.out.push_str(&comment.text);
                self.next_comment += 1;
            }
        }
    }

    fn blank_line(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("\n\n") && !self.out.ends_with("{\n") {
            self.out.push('\n');
        }
    }
}

fn one_line_list(items: &[Value]) -> Option<String> {
    let mut parts = Vec::new();
    for item in items {
        parts.push(match &item.kind {
            ValueKind::String(s) => quote(s),
            ValueKind::Number(Number::Int(n)) => n.to_string(),
            ValueKind::Number(Number::Float(f)) => format!("{f:?}"),
            ValueKind::Bool(b) => b.to_string(),
            ValueKind::List(_) | ValueKind::Object(_) => return None,
        });
    }
    Some(format!("[{}]", parts.join(", ")))
}

fn key_text(item: &Item) -> String {
    let key = &item.key;
    let bare = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if bare {
        key.clone()
    } else {
        quote(key)
    }
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A cursor over the source that knows lines, strings, comments and heredocs.
struct Scanner<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: u32,
    column: u32,
    /// Whether code (not whitespace or comments) was seen on the current line.
    code_on_line: bool,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            chars: text.chars().peekable(),
            line: 1,
            column: 1,
            code_on_line: false,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
            self.code_on_line = false;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// Steps over one lexical unit; returns a comment when it was one, and the code
    /// character otherwise (strings and heredocs are consumed whole and return `'"'`).
    fn step(&mut self) -> Option<Unit> {
        let c = self.bump()?;
        match c {
            '#' => Some(Unit::Comment(self.line_comment("#"))),
            '/' if self.chars.peek() == Some(&'/') => {
                self.bump();
                Some(Unit::Comment(self.line_comment("//")))
            }
            '/' if self.chars.peek() == Some(&'*') => {
                self.bump();
                let mut text = String::from("/*");
                let mut previous = '\0';
                while let Some(c) = self.bump() {
                    text.push(c);
                    if previous == '*' && c == '/' {
                        break;
                    }
                    previous = c;
                }
                Some(Unit::Comment(text))
            }
            '"' => {
                self.code_on_line = true;
                while let Some(c) = self.bump() {
                    match c {
                        '\\' => {
                            self.bump();
                        }
                        '"' | '\n' => break,
                        _ => {}
                    }
                }
                Some(Unit::Code('"'))
            }
            '<' if self.chars.peek() == Some(&'<') => {
                self.code_on_line = true;
                self.bump();
                if self.chars.peek() == Some(&'-') {
                    self.bump();
                }
                let mut anchor = String::new();
                while let Some(&c) = self.chars.peek() {
                    if c == '\n' {
                        break;
                    }
                    anchor.push(c);
                    self.bump();
                }
                let anchor = anchor.trim().to_string();
                let mut current = String::new();
                while let Some(c) = self.bump() {
                    if c == '\n' {
                        if current.trim() == anchor && !anchor.is_empty() {
                            break;
                        }
                        current.clear();
                    } else {
                        current.push(c);
                    }
                }
                if current.trim() == anchor {
                    self.code_on_line = true;
                }
                Some(Unit::Code('"'))
            }
            c if c.is_whitespace() => Some(Unit::Space),
            c => {
                self.code_on_line = true;
                Some(Unit::Code(c))
            }
        }
    }

    fn line_comment(&mut self, opener: &str) -> String {
        let mut text = opener.to_string();
        while let Some(&c) = self.chars.peek() {
            if c == '\n' {
                break;
            }
            text.push(c);
            self.bump();
        }
        text.trim_end().to_string()
    }
}

enum Unit {
    Comment(String),
    Code(char),
    Space,
}

fn scan_comments(text: &str) -> Vec<Comment> {
    let mut scanner = Scanner::new(text);
    let mut comments = Vec::new();
    loop {
        let line = scanner.line;
        let trailing = scanner.code_on_line;
        match scanner.step() {
            None => break,
            Some(Unit::Comment(text)) => comments.push(Comment {
                line,
                text,
                trailing,
            }),
            Some(_) => {}
        }
    }
    comments
}

/// The line of the `}` matching the `{` at `line`:`column`.
fn closing_line(text: &str, line: u32, column: u32) -> u32 {
    let mut scanner = Scanner::new(text);
    while scanner.line < line || (scanner.line == line && scanner.column < column) {
        if scanner.step().is_none() {
            return u32::MAX;
        }
    }
    let mut depth = 0usize;
    loop {
        let at = scanner.line;
        match scanner.step() {
            None => return u32::MAX,
            Some(Unit::Code('{')) => depth += 1,
            Some(Unit::Code('}')) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return at;
                }
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSY: &str = r#"# Agents read their own secrets.
path "secret/data/agents/*" {
capabilities=["read","list"]   # no writes
    min_wrapping_ttl = "1s"
}
path "sys/*" { capabilities = ["deny"] }
path "secret/data/admin" {
  capabilities = ["create", "read", "update", "delete", "list", "patch", "sudo"]
  allowed_parameters = {
    "*" = []
    ttl = ["1h","2h"]
  }
  required_parameters = ["a-rather-long-parameter-name", "another-long-parameter-name", "third", "fourth"]
  // kept before the brace
}
"#;

    const CANONICAL: &str = r#"# Agents read their own secrets.
path "secret/data/agents/*" {
  capabilities     = ["read", "list"] # no writes
  min_wrapping_ttl = "1s"
}

path "sys/*" {
  capabilities = ["deny"]
}

path "secret/data/admin" {
  capabilities        = ["create", "read", "update", "delete", "list", "patch", "sudo"]
  allowed_parameters  = {
    "*" = []
    ttl = ["1h", "2h"]
  }
  required_parameters = [
    "a-rather-long-parameter-name",
    "another-long-parameter-name",
    "third",
    "fourth",
  ]
  // kept before the brace
}
"#;

    #[test]
    fn canonical_layout_keeps_comments_and_is_idempotent() {
        let formatted = format(MESSY).expect("valid");
        assert_eq!(formatted, CANONICAL, "\n{formatted}");
        assert_eq!(format(&formatted).expect("valid"), formatted);
    }

    #[test]
    fn same_policy_after_formatting() {
        let formatted = format(MESSY).expect("valid");
        let before = ward_policy::hcl::parse(MESSY).expect("valid").to_json();
        let after = ward_policy::hcl::parse(&formatted)
            .expect("valid")
            .to_json();
        assert_eq!(before, after);
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let error = format("path \"x\" {\n  capabilities = [\"read\"\n").expect_err("invalid");
        assert!(error.contains("line"), "{error}");
    }

    #[test]
    fn strings_with_comment_characters_are_not_comments() {
        let text = "path \"secret/#notes//x\" {\n  capabilities = [\"read\"]\n}\n";
        assert_eq!(format(text).expect("valid"), text);
    }
}
