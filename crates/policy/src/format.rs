//! The canonical layout of HCL files: `ward policy fmt`.
//!
//! [`format()`] reads a document with [`hcl::parse_with_comments`] and prints
//! the tree back in one layout: two-space indentation, one item per line,
//! `key = value` with single spaces, labels always quoted, keys bare when they
//! are identifiers, no commas between items, lists on one line when they hold
//! only scalars and fit in [`MAX_WIDTH`] columns (otherwise one element per
//! line with a trailing comma), one blank line between top-level blocks,
//! single blank lines elsewhere kept where the author put them, `//` comments
//! written as `#`, and exactly one newline at the end.
//!
//! Comments are put back by position: a comment on its own line stays on its
//! own line before the item (or closing bracket) that follows it; a comment
//! after code stays at the end of that line. The printer never reorders
//! items, so the meaning of the document cannot change, and its output is a
//! fixed point: `format(format(x)) == format(x)`.
//!
//! JSON documents (a first non-blank `{`) are returned unchanged: JSON has no
//! comments and its layout is left to JSON tools. What the keys mean is not
//! this module's business; the same printer serves policies, test files and
//! object files.

use std::collections::HashMap;

use crate::hcl::{self, Body, Comment, HclError, Item, Number, Value, ValueKind};

/// The widest line a list is kept on before it is split, one element per line.
pub const MAX_WIDTH: usize = 100;

const INDENT: &str = "  ";

/// Formats an HCL document; JSON documents come back unchanged.
pub fn format(text: &str) -> Result<String, HclError> {
    if text.trim_start().starts_with('{') {
        return Ok(text.to_owned());
    }
    let document = hcl::parse_with_comments(text)?;
    let mut printer = Printer {
        source_lines: text.lines().collect(),
        comments: document.comments,
        next_comment: 0,
        closings: document
            .closings
            .iter()
            .map(|closing| (closing.open, closing.close))
            .collect(),
        lines: Vec::new(),
        last_opener: None,
    };
    printer.body(&document.body, 0, BodyEnd::Document);
    let mut out = printer.lines.join("\n");
    let trimmed = out.trim_end_matches(['\n', ' ']).len();
    out.truncate(trimmed);
    if !out.is_empty() {
        out.push('\n');
    }
    Ok(out)
}

/// True when the text is already in canonical form.
pub fn is_formatted(text: &str) -> Result<bool, HclError> {
    Ok(format(text)? == text)
}

/// Where a body ends: at the end of the document or at a closing brace.
#[derive(Clone, Copy)]
enum BodyEnd {
    Document,
    Brace((u32, u32)),
}

struct Printer<'a> {
    source_lines: Vec<&'a str>,
    comments: Vec<Comment>,
    next_comment: usize,
    closings: HashMap<(u32, u32), (u32, u32)>,
    lines: Vec<String>,
    /// Index of the last line that opened a block, object or list.
    last_opener: Option<usize>,
}

impl Printer<'_> {
    fn body(&mut self, body: &Body, depth: usize, end: BodyEnd) {
        let top = matches!(end, BodyEnd::Document);
        let mut previous_block = false;
        for (index, item) in body.items.iter().enumerate() {
            let position = (item.line, item.column);
            self.flush_trailing(position);
            if top && index > 0 && (item.block || previous_block) {
                self.blank_line();
            }
            self.flush_before(position, depth);
            if self.blank_in_source_before(item.line) {
                self.blank_line();
            }
            self.item(item, depth);
            previous_block = item.block || is_object(&item.value);
        }
        match end {
            BodyEnd::Document => self.flush_before((u32::MAX, u32::MAX), depth),
            BodyEnd::Brace(close) => self.flush_before(close, depth),
        }
    }

    fn item(&mut self, item: &Item, depth: usize) {
        let mut head = format!("{}{}", indent(depth), key(&item.key));
        if item.block {
            for label in &item.labels {
                head.push(' ');
                head.push_str(&quote(label));
            }
            head.push(' ');
            self.value(&item.value, depth, head, Context::Attribute);
            return;
        }
        // Labels on an attribute cannot be written back as HCL; HCL1 does not
        // produce them, so this only guards against a tree built by hand.
        head.push_str(" = ");
        self.value(&item.value, depth, head, Context::Attribute);
    }

    /// Prints a value that starts on a line beginning with `head`.
    fn value(&mut self, value: &Value, depth: usize, head: String, context: Context) {
        match &value.kind {
            ValueKind::Object(body) => {
                let close = self.close_of(value);
                if body.items.is_empty() && !self.comment_before(close) {
                    self.push(format!("{head}{{}}"));
                    return;
                }
                self.push_opener(format!("{head}{{"));
                self.body(body, depth + 1, BodyEnd::Brace(close));
                self.push(format!("{}}}", indent(depth)));
            }
            ValueKind::List(values) => {
                let close = self.close_of(value);
                if let Some(inline) = inline_list(values) {
                    if head.chars().count() + inline.chars().count() <= MAX_WIDTH
                        && !self.comment_before(close)
                    {
                        self.push(format!("{head}{inline}"));
                        return;
                    }
                }
                self.push_opener(format!("{head}["));
                for element in values {
                    let position = (element.line, element.column);
                    self.flush_before(position, depth + 1);
                    self.value(element, depth + 1, indent(depth + 1), Context::ListElement);
                    if let Some(last) = self.lines.last_mut() {
                        last.push(',');
                    }
                }
                self.flush_before(close, depth + 1);
                self.push(format!("{}]", indent(depth)));
            }
            ValueKind::String(text) => match (context, heredoc_anchor(text)) {
                (Context::Attribute, Some(anchor)) => {
                    self.push(format!("{head}<<{anchor}"));
                    for line in text.lines() {
                        self.push(line.to_owned());
                    }
                    self.push(anchor);
                }
                _ => self.push(format!("{head}{}", quote(text))),
            },
            ValueKind::Number(number) => self.push(format!("{head}{}", render_number(*number))),
            ValueKind::Bool(boolean) => self.push(format!("{head}{boolean}")),
        }
    }

    /// The closing bracket of a list or object value; the opening one when unknown.
    fn close_of(&self, value: &Value) -> (u32, u32) {
        let open = (value.line, value.column);
        self.closings.get(&open).copied().unwrap_or(open)
    }

    fn comment_before(&self, position: (u32, u32)) -> bool {
        self.comments
            .get(self.next_comment)
            .is_some_and(|comment| (comment.line, comment.column) < position)
    }

    /// Comments that end a line of code before `position`, appended to the last line.
    fn flush_trailing(&mut self, position: (u32, u32)) {
        while let Some(comment) = self.comments.get(self.next_comment) {
            if comment.own_line || (comment.line, comment.column) >= position {
                break;
            }
            let comment = comment.clone();
            self.next_comment += 1;
            self.comment(&comment, 0);
        }
    }

    /// Every comment before `position`.
    fn flush_before(&mut self, position: (u32, u32), depth: usize) {
        while let Some(comment) = self.comments.get(self.next_comment) {
            if (comment.line, comment.column) >= position {
                break;
            }
            let comment = comment.clone();
            self.next_comment += 1;
            self.comment(&comment, depth);
        }
    }

    fn comment(&mut self, comment: &Comment, depth: usize) {
        let text = match comment.text.strip_prefix("//") {
            Some(rest) => format!("#{rest}"),
            None => comment.text.clone(),
        };
        let appendable = !comment.own_line
            && self
                .lines
                .last()
                .is_some_and(|line| !line.trim().is_empty());
        if appendable {
            if let Some(last) = self.lines.last_mut() {
                let first = text.lines().next().unwrap_or_default();
                last.push(' ');
                last.push_str(first);
                let rest: Vec<String> = text.lines().skip(1).map(str::to_owned).collect();
                for line in rest {
                    self.push(line);
                }
            }
            return;
        }
        if self.blank_in_source_before(comment.line) {
            self.blank_line();
        }
        let mut lines = text.lines();
        let first = lines.next().unwrap_or_default();
        self.push(format!("{}{first}", indent(depth)));
        for line in lines {
            self.push(line.trim_end().to_owned());
        }
    }

    fn blank_in_source_before(&self, line: u32) -> bool {
        let Some(index) = usize::try_from(line).ok().and_then(|l| l.checked_sub(2)) else {
            return false;
        };
        self.source_lines
            .get(index)
            .is_some_and(|text| text.trim().is_empty())
    }

    /// One empty line, unless the output is empty, already ends in one, or has just opened a bracket.
    fn blank_line(&mut self) {
        let Some(last) = self.lines.last() else {
            return;
        };
        if last.is_empty() || self.last_opener == Some(self.lines.len() - 1) {
            return;
        }
        self.lines.push(String::new());
    }

    fn push(&mut self, line: String) {
        self.lines.push(line);
    }

    fn push_opener(&mut self, line: String) {
        self.lines.push(line);
        self.last_opener = Some(self.lines.len() - 1);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Attribute,
    ListElement,
}

fn is_object(value: &Value) -> bool {
    matches!(value.kind, ValueKind::Object(_))
}

fn indent(depth: usize) -> String {
    INDENT.repeat(depth)
}

/// A list of scalars (and lists of scalars) on one line, or `None` when it holds an object.
fn inline_list(values: &[Value]) -> Option<String> {
    let mut parts = Vec::with_capacity(values.len());
    for value in values {
        parts.push(match &value.kind {
            ValueKind::String(text) => quote(text),
            ValueKind::Number(number) => render_number(*number),
            ValueKind::Bool(boolean) => boolean.to_string(),
            ValueKind::List(inner) => inline_list(inner)?,
            ValueKind::Object(_) => return None,
        });
    }
    Some(format!("[{}]", parts.join(", ")))
}

fn render_number(number: Number) -> String {
    match number {
        Number::Int(int) => int.to_string(),
        // `{:?}` is the shortest text that reads back as the same float, and keeps the `.0`.
        Number::Float(float) => format!("{float:?}"),
    }
}

/// A key as written: bare when it is an identifier, quoted otherwise.
fn key(text: &str) -> String {
    let mut chars = text.chars();
    let bare = chars
        .next()
        .is_some_and(|first| first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if bare {
        text.to_owned()
    } else {
        quote(text)
    }
}

/// A double-quoted HCL string with the escapes the reader understands.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Multi-line strings that end in a newline are written as heredocs; the
/// anchor is `EOT`, or `EOT2`, `EOT3`... when a line of the text is `EOT`.
fn heredoc_anchor(text: &str) -> Option<String> {
    if !text.contains('\n')
        || !text.ends_with('\n')
        || text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return None;
    }
    let taken = |anchor: &str| text.lines().any(|line| line.trim() == anchor);
    let mut anchor = "EOT".to_owned();
    let mut n = 1;
    while taken(&anchor) {
        n += 1;
        anchor = format!("EOT{n}");
    }
    Some(anchor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(text: &str) -> String {
        let once = format(text).expect("formats");
        assert_eq!(
            format(&once).expect("formats again"),
            once,
            "not idempotent"
        );
        assert_eq!(
            hcl::parse(&once).expect("output parses").to_json(),
            hcl::parse(text).expect("input parses").to_json(),
            "meaning changed"
        );
        once
    }

    #[test]
    fn canonical_layout() {
        let text = "path \"secret/*\" {capabilities=[\"read\",\"list\"]\n  policy = \"read\", }\npath \"a\" { capabilities = [] }";
        assert_eq!(
            fmt(text),
            "path \"secret/*\" {\n  capabilities = [\"read\", \"list\"]\n  policy = \"read\"\n}\n\npath \"a\" {\n  capabilities = []\n}\n"
        );
    }

    #[test]
    fn comments_are_kept_in_place() {
        let text = "# header\n\n// about a\npath \"a\" { # opens\n  # inside\n  capabilities = [\"read\"] # trailing\n\n  /* block */\n  policy = \"read\"\n  # last\n} # closing\n# tail\n";
        let out = fmt(text);
        assert_eq!(
            out,
            "# header\n\n# about a\npath \"a\" { # opens\n  # inside\n  capabilities = [\"read\"] # trailing\n\n  /* block */\n  policy = \"read\"\n  # last\n} # closing\n# tail\n"
        );
    }

    #[test]
    fn comments_inside_lists_split_the_list() {
        let out = fmt("x = [\"a\", # first\n  # own\n  \"b\"]\n");
        assert_eq!(out, "x = [\n  \"a\", # first\n  # own\n  \"b\",\n]\n");
    }

    #[test]
    fn long_lists_and_objects() {
        let long: Vec<String> = (0..30).map(|n| format!("\"value-{n}\"")).collect();
        let text = format!(
            "path \"p\" {{ allowed_parameters = {{ \"*\" = [] k = [{}] }} control_group = {{ factor \"f\" {{ identity {{ group_names = [\"g\"] approvals = 1 }} }} }} }}",
            long.join(",")
        );
        let out = fmt(&text);
        assert!(
            out.contains("    \"*\" = []\n    k = [\n      \"value-0\",\n"),
            "{out}"
        );
        assert!(
            out.contains("  control_group = {\n    factor \"f\" {\n"),
            "{out}"
        );
    }

    #[test]
    fn strings_numbers_heredocs() {
        let out = fmt("a = \"q\\\"\\\\\\t\" b = 1.0 c = -3 d = true e = <<-EOF\n    x\n    EOF\nf = \"l1\\nl2\"\n");
        assert_eq!(
            out,
            "a = \"q\\\"\\\\\\t\"\nb = 1.0\nc = -3\nd = true\ne = <<EOT\nx\nEOT\nf = \"l1\\nl2\"\n"
        );
        assert_eq!(
            fmt("policy = \"EOT\\nx\\n\""),
            "policy = <<EOT2\nEOT\nx\nEOT2\n"
        );
    }

    #[test]
    fn json_and_empty_documents() {
        assert_eq!(fmt(""), "");
        assert_eq!(fmt("\n\n# only\n\n"), "# only\n");
        let json = "{\"path\": {\"a\": {\"capabilities\": [\"read\"]}}}";
        assert_eq!(format(json).expect("json"), json);
    }

    #[test]
    fn errors_carry_positions() {
        let error = format("path \"a\" {\n  capabilities = [\"read\"\n").expect_err("broken");
        assert_eq!(error.line, 3);
    }
}
