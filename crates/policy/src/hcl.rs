//! A small reader for HCL version 1, the dialect Vault parses policies with.
//!
//! It owns the syntax only: a hand-written lexer and recursive-descent parser
//! that turn text into a generic tree ([`Body`], [`Item`], [`Value`]) in which
//! every item and value carries its 1-based line and column, plus the
//! HCL1→JSON mapping and a few helpers for decoders (typed getters and
//! "unknown key" errors). What the keys *mean* is left to the callers: the
//! policy decoder in this crate and the server's config decoder.
//!
//! HCL1 differs from HCL2 in ways Vault policies rely on: object items may be
//! separated by commas, newlines or nothing at all, and labelled blocks may
//! appear inside `key = { ... }` objects (`control_group = { factor "ops" { ... } }`).
//! Newlines carry no meaning at all in HCL1, so the lexer skips them like any
//! other whitespace. Nesting is limited to [`MAX_DEPTH`] levels so that a
//! hostile document cannot exhaust the stack; every step of the lexer and the
//! parser is linear in the input.

use std::fmt;

/// The deepest nesting of blocks, objects and lists the parser accepts.
pub const MAX_DEPTH: usize = 100;

/// Parses an HCL1 document into its top-level body.
pub fn parse(text: &str) -> Result<Body, HclError> {
    let mut parser = Parser {
        lexer: Lexer::new(text),
        peeked: None,
        closings: None,
    };
    parser.parse_body(0, 1, 1, false)
}

/// Parses an HCL1 document and keeps what [`parse`] throws away: the comments
/// and where each `}` and `]` closes, so that a formatter can put comments back
/// where they were ([`crate::format`]). The tree is the same as [`parse`]'s.
pub fn parse_with_comments(text: &str) -> Result<Document, HclError> {
    let mut parser = Parser {
        lexer: Lexer::new(text),
        peeked: None,
        closings: None,
    };
    parser.lexer.comments = Some(Vec::new());
    parser.closings = Some(Vec::new());
    let body = parser.parse_body(0, 1, 1, false)?;
    Ok(Document {
        body,
        comments: parser.lexer.comments.take().unwrap_or_default(),
        closings: parser.closings.take().unwrap_or_default(),
    })
}

/// A parsed document with its comments, from [`parse_with_comments`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    pub body: Body,
    /// Every comment, in source order.
    pub comments: Vec<Comment>,
    /// For each `{` or `[` (by its position), where its closing `}` or `]` is.
    pub closings: Vec<Closing>,
}

/// One `# ...`, `// ...` or `/* ... */` comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// The comment as written, markers included, without the line break.
    pub text: String,
    pub line: u32,
    pub column: u32,
    /// Only whitespace precedes the comment on its line.
    pub own_line: bool,
}

/// Where the bracket opened at `open` is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing {
    pub open: (u32, u32),
    pub close: (u32, u32),
}

/// A syntax or decoding error, with the 1-based position it refers to.
///
/// A position of 0 means "unknown" (values converted from JSON carry none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclError {
    pub message: String,
    pub line: u32,
    pub column: u32,
}

impl HclError {
    /// An error at the given position.
    pub fn new(message: impl Into<String>, line: u32, column: u32) -> HclError {
        HclError {
            message: message.into(),
            line,
            column,
        }
    }
}

impl fmt::Display for HclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if self.line > 0 {
            write!(f, " at line {}, column {}", self.line, self.column)?;
        }
        Ok(())
    }
}

impl std::error::Error for HclError {}

/// A list of items: the whole document, a block's contents or an object value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Body {
    pub items: Vec<Item>,
    pub line: u32,
    pub column: u32,
}

/// One `key label... = value` or `key label... { body }` entry.
///
/// A block is stored with its body as an [`ValueKind::Object`] value and
/// `block` set, so decoders can treat `key { ... }` and `key = { ... }` alike.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: String,
    pub labels: Vec<String>,
    pub value: Value,
    pub block: bool,
    pub line: u32,
    pub column: u32,
}

/// A value with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub line: u32,
    pub column: u32,
}

/// The kinds of value HCL1 has. There is no null.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    String(String),
    Number(Number),
    Bool(bool),
    List(Vec<Value>),
    Object(Body),
}

/// An HCL number: integers stay exact, everything else is a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    /// The number as a float (integers beyond 2^53 lose precision).
    pub fn as_f64(self) -> f64 {
        match self {
            // Precision loss above 2^53 is accepted: callers asking for a
            // float want an approximate value.
            #[allow(clippy::cast_precision_loss)]
            Number::Int(int) => int as f64,
            Number::Float(float) => float,
        }
    }
}

impl Body {
    /// The items in document order, duplicates included.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The first item with this key.
    pub fn get(&self, key: &str) -> Option<&Item> {
        self.items.iter().find(|item| item.key == key)
    }

    /// Every item with this key, in document order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Item> + 'a {
        self.items.iter().filter(move |item| item.key == key)
    }

    /// Fails on the first item whose key is not in `known`, naming it and its position:
    /// "unknown key `foo` at line 3, column 5".
    pub fn check_keys(&self, known: &[&str]) -> Result<(), HclError> {
        match self
            .items
            .iter()
            .find(|item| !known.contains(&item.key.as_str()))
        {
            Some(item) => Err(item.error(format!("unknown key `{}`", item.key))),
            None => Ok(()),
        }
    }

    /// Converts the body to JSON the way HCL1 does: labels become nested
    /// objects keyed by label, and items that land on the same key (repeated
    /// attributes or blocks with the same labels) are gathered into a list.
    pub fn to_json(&self) -> serde_json::Value {
        let mut root: Vec<(String, JsonNode)> = Vec::new();
        for item in &self.items {
            let mut keys: Vec<&str> = Vec::with_capacity(1 + item.labels.len());
            keys.push(&item.key);
            keys.extend(item.labels.iter().map(String::as_str));
            json_insert(&mut root, &keys, item.value.to_json());
        }
        json_render_map(root)
    }

    /// Builds a body from a JSON object (positions are 0: unknown).
    ///
    /// Used to decode JSON documents (such as JSON policies) with the same
    /// decoder as HCL. JSON `null` has no HCL equivalent and is rejected.
    pub fn from_json(json: &serde_json::Value) -> Result<Body, HclError> {
        from_json_depth(json, 0).and_then(|value| match value.kind {
            ValueKind::Object(body) => Ok(body),
            _ => Err(HclError::new(
                "expected a JSON object at the top level",
                0,
                0,
            )),
        })
    }
}

impl Item {
    /// An error located at this item.
    pub fn error(&self, message: impl Into<String>) -> HclError {
        HclError::new(message, self.line, self.column)
    }

    /// The value as a string, or an error naming the key.
    pub fn string(&self) -> Result<&str, HclError> {
        self.value
            .as_str()
            .ok_or_else(|| self.type_error("a string"))
    }

    /// The value as an integer, or an error naming the key.
    pub fn integer(&self) -> Result<i64, HclError> {
        self.value
            .as_i64()
            .ok_or_else(|| self.type_error("an integer"))
    }

    /// The value as a number, or an error naming the key.
    pub fn number(&self) -> Result<f64, HclError> {
        self.value
            .as_f64()
            .ok_or_else(|| self.type_error("a number"))
    }

    /// The value as a boolean, or an error naming the key.
    pub fn bool(&self) -> Result<bool, HclError> {
        self.value
            .as_bool()
            .ok_or_else(|| self.type_error("a boolean"))
    }

    /// The value as a list, or an error naming the key.
    pub fn list(&self) -> Result<&[Value], HclError> {
        self.value
            .as_list()
            .ok_or_else(|| self.type_error("a list"))
    }

    /// The value as a list of strings, or an error naming the key.
    pub fn string_list(&self) -> Result<Vec<String>, HclError> {
        let list = self.list()?;
        list.iter()
            .map(|value| {
                value
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.type_error("a list of strings"))
            })
            .collect()
    }

    /// The value as an object (a block's body or `key = { ... }`), or an error naming the key.
    pub fn object(&self) -> Result<&Body, HclError> {
        self.value
            .as_object()
            .ok_or_else(|| self.type_error("an object"))
    }

    fn type_error(&self, expected: &str) -> HclError {
        self.error(format!(
            "`{}` must be {}, found {}",
            self.key,
            expected,
            self.value.type_name()
        ))
    }
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            ValueKind::String(string) => Some(string),
            _ => None,
        }
    }

    /// Integers, and floats with no fractional part.
    pub fn as_i64(&self) -> Option<i64> {
        match self.kind {
            ValueKind::Number(Number::Int(int)) => Some(int),
            ValueKind::Number(Number::Float(float))
                if float.fract() == 0.0 && float.abs() < 9.0e15 =>
            {
                // The guard keeps the float within i64's exactly representable range.
                #[allow(clippy::cast_possible_truncation)]
                Some(float as i64)
            }
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self.kind {
            ValueKind::Number(number) => Some(number.as_f64()),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            ValueKind::Bool(boolean) => Some(boolean),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match &self.kind {
            ValueKind::List(list) => Some(list),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Body> {
        match &self.kind {
            ValueKind::Object(body) => Some(body),
            _ => None,
        }
    }

    /// "a string", "a list", ... for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ValueKind::String(_) => "a string",
            ValueKind::Number(_) => "a number",
            ValueKind::Bool(_) => "a boolean",
            ValueKind::List(_) => "a list",
            ValueKind::Object(_) => "an object",
        }
    }

    /// The JSON form of the value (objects as by [`Body::to_json`]).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.kind {
            ValueKind::String(string) => serde_json::Value::String(string.clone()),
            ValueKind::Number(Number::Int(int)) => serde_json::Value::from(*int),
            ValueKind::Number(Number::Float(float)) => serde_json::Number::from_f64(*float)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            ValueKind::Bool(boolean) => serde_json::Value::Bool(*boolean),
            ValueKind::List(list) => {
                serde_json::Value::Array(list.iter().map(Value::to_json).collect())
            }
            ValueKind::Object(body) => body.to_json(),
        }
    }
}

// ---------------------------------------------------------------------------
// JSON conversion helpers

/// An intermediate tree for the HCL1→JSON mapping: labels nest as maps, and
/// a leaf collects every value that lands on the same key.
enum JsonNode {
    Leaf(Vec<serde_json::Value>),
    Map(Vec<(String, JsonNode)>),
}

fn json_insert(map: &mut Vec<(String, JsonNode)>, keys: &[&str], value: serde_json::Value) {
    let Some((first, rest)) = keys.split_first() else {
        return;
    };
    let new_node = |value| {
        if rest.is_empty() {
            JsonNode::Leaf(vec![value])
        } else {
            let mut inner = Vec::new();
            json_insert(&mut inner, rest, value);
            JsonNode::Map(inner)
        }
    };
    let Some(index) = map.iter().position(|(key, _)| key == first) else {
        map.push(((*first).to_owned(), new_node(value)));
        return;
    };
    let Some((_, node)) = map.get_mut(index) else {
        return;
    };
    match node {
        JsonNode::Map(inner) if !rest.is_empty() => json_insert(inner, rest, value),
        JsonNode::Leaf(values) => values.push(json_render(new_node(value))),
        JsonNode::Map(_) => {
            // A value lands where labelled blocks already are: keep both, as a list.
            let old = std::mem::replace(node, JsonNode::Leaf(Vec::new()));
            *node = JsonNode::Leaf(vec![json_render(old), json_render(new_node(value))]);
        }
    }
}

fn json_render(node: JsonNode) -> serde_json::Value {
    match node {
        JsonNode::Leaf(mut values) => {
            if values.len() == 1 {
                values.pop().unwrap_or(serde_json::Value::Null)
            } else {
                serde_json::Value::Array(values)
            }
        }
        JsonNode::Map(map) => json_render_map(map),
    }
}

fn json_render_map(map: Vec<(String, JsonNode)>) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for (key, node) in map {
        object.insert(key, json_render(node));
    }
    serde_json::Value::Object(object)
}

fn from_json_depth(json: &serde_json::Value, depth: usize) -> Result<Value, HclError> {
    if depth > MAX_DEPTH {
        return Err(HclError::new(
            format!("nesting too deep (more than {MAX_DEPTH} levels)"),
            0,
            0,
        ));
    }
    let kind = match json {
        serde_json::Value::Null => {
            return Err(HclError::new("null values are not supported", 0, 0))
        }
        serde_json::Value::Bool(boolean) => ValueKind::Bool(*boolean),
        serde_json::Value::Number(number) => match number.as_i64() {
            Some(int) => ValueKind::Number(Number::Int(int)),
            None => ValueKind::Number(Number::Float(number.as_f64().unwrap_or(f64::NAN))),
        },
        serde_json::Value::String(string) => ValueKind::String(string.clone()),
        serde_json::Value::Array(array) => ValueKind::List(
            array
                .iter()
                .map(|element| from_json_depth(element, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(object) => {
            let mut items = Vec::with_capacity(object.len());
            for (key, value) in object {
                items.push(Item {
                    key: key.clone(),
                    labels: Vec::new(),
                    value: from_json_depth(value, depth + 1)?,
                    block: false,
                    line: 0,
                    column: 0,
                });
            }
            ValueKind::Object(Body {
                items,
                line: 0,
                column: 0,
            })
        }
    };
    Ok(Value {
        kind,
        line: 0,
        column: 0,
    })
}

// ---------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    Ident(String),
    Str(String),
    Number(Number),
    LeftBrace,
    RightBrace,
    LeftBracket,
    RightBracket,
    Assign,
    Comma,
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    line: u32,
    column: u32,
}

impl TokenKind {
    fn describe(&self) -> String {
        match self {
            TokenKind::Ident(ident) => format!("identifier `{ident}`"),
            TokenKind::Str(string) => format!("string {string:?}"),
            TokenKind::Number(_) => "a number".to_owned(),
            TokenKind::LeftBrace => "'{'".to_owned(),
            TokenKind::RightBrace => "'}'".to_owned(),
            TokenKind::LeftBracket => "'['".to_owned(),
            TokenKind::RightBracket => "']'".to_owned(),
            TokenKind::Assign => "'='".to_owned(),
            TokenKind::Comma => "','".to_owned(),
            TokenKind::Eof => "end of input".to_owned(),
        }
    }
}

struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    position: usize,
    line: u32,
    column: u32,
    /// Collected comments, when the caller asked for them.
    comments: Option<Vec<Comment>>,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Lexer<'a> {
        Lexer {
            text,
            bytes: text.as_bytes(),
            position: 0,
            line: 1,
            column: 1,
            comments: None,
        }
    }

    /// Records the comment that spans `start..self.position`, if comments are kept.
    fn record_comment(&mut self, start: usize, line: u32, column: u32) {
        let Some(comments) = self.comments.as_mut() else {
            return;
        };
        let text = self.text.get(start..self.position).unwrap_or_default();
        let line_start = self
            .text
            .get(..start)
            .and_then(|before| before.rfind('\n').map(|index| index + 1))
            .unwrap_or(0);
        let own_line = self
            .text
            .get(line_start..start)
            .is_some_and(|before| before.trim().is_empty());
        comments.push(Comment {
            text: text.trim_end().to_owned(),
            line,
            column,
            own_line,
        });
    }

    fn peek_byte(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn peek_byte_at(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.position + offset).copied()
    }

    /// Advances one byte, keeping line and column (columns count characters).
    fn bump(&mut self) -> Option<u8> {
        let byte = self.peek_byte()?;
        self.position += 1;
        if byte == b'\n' {
            self.line += 1;
            self.column = 1;
        } else if byte & 0xC0 != 0x80 {
            self.column += 1;
        }
        Some(byte)
    }

    fn error(&self, message: impl Into<String>) -> HclError {
        HclError::new(message, self.line, self.column)
    }

    fn skip_trivia(&mut self) -> Result<(), HclError> {
        loop {
            match (self.peek_byte(), self.peek_byte_at(1)) {
                (Some(b' ' | b'\t' | b'\r' | b'\n'), _) => {
                    self.bump();
                }
                (Some(b'#'), _) | (Some(b'/'), Some(b'/')) => {
                    let (start, line, column) = (self.position, self.line, self.column);
                    while let Some(byte) = self.peek_byte() {
                        if byte == b'\n' {
                            break;
                        }
                        self.bump();
                    }
                    self.record_comment(start, line, column);
                }
                (Some(b'/'), Some(b'*')) => {
                    let (start, line, column) = (self.position, self.line, self.column);
                    self.bump();
                    self.bump();
                    loop {
                        match (self.peek_byte(), self.peek_byte_at(1)) {
                            (Some(b'*'), Some(b'/')) => {
                                self.bump();
                                self.bump();
                                self.record_comment(start, line, column);
                                break;
                            }
                            (Some(_), _) => {
                                self.bump();
                            }
                            (None, _) => {
                                return Err(HclError::new(
                                    "comment not terminated (missing `*/`)",
                                    line,
                                    column,
                                ))
                            }
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn next_token(&mut self) -> Result<Token, HclError> {
        self.skip_trivia()?;
        let (line, column) = (self.line, self.column);
        let token = |kind| Token { kind, line, column };
        let Some(byte) = self.peek_byte() else {
            return Ok(token(TokenKind::Eof));
        };
        let single = match byte {
            b'{' => Some(TokenKind::LeftBrace),
            b'}' => Some(TokenKind::RightBrace),
            b'[' => Some(TokenKind::LeftBracket),
            b']' => Some(TokenKind::RightBracket),
            b'=' => Some(TokenKind::Assign),
            b',' => Some(TokenKind::Comma),
            _ => None,
        };
        if let Some(kind) = single {
            self.bump();
            return Ok(token(kind));
        }
        match byte {
            b'"' => Ok(token(TokenKind::Str(self.string()?))),
            b'<' if self.peek_byte_at(1) == Some(b'<') => {
                Ok(token(TokenKind::Str(self.heredoc()?)))
            }
            b'-' | b'0'..=b'9' => Ok(token(TokenKind::Number(self.number()?))),
            _ if is_ident_start(self.current_char()) => {
                let start = self.position;
                while is_ident_continue(self.current_char()) {
                    self.bump_char();
                }
                Ok(token(TokenKind::Ident(
                    self.text
                        .get(start..self.position)
                        .unwrap_or_default()
                        .to_owned(),
                )))
            }
            _ => Err(self.error(format!(
                "unexpected character {:?}",
                self.current_char().unwrap_or('?')
            ))),
        }
    }

    fn current_char(&self) -> Option<char> {
        self.text
            .get(self.position..)
            .and_then(|rest| rest.chars().next())
    }

    fn bump_char(&mut self) {
        if let Some(character) = self.current_char() {
            for _ in 0..character.len_utf8() {
                self.bump();
            }
        }
    }

    /// A double-quoted string; the opening quote is the current byte.
    fn string(&mut self) -> Result<String, HclError> {
        let (line, column) = (self.line, self.column);
        self.bump();
        let mut out = String::new();
        // Depth inside `${ ... }` interpolations, where HCL1 lets quotes appear
        // unescaped; the text is kept literally.
        let mut braces = 0usize;
        loop {
            let Some(character) = self.current_char() else {
                return Err(HclError::new("string not terminated", line, column));
            };
            match character {
                '"' if braces == 0 => {
                    self.bump();
                    return Ok(out);
                }
                '\n' => {
                    return Err(HclError::new(
                        "string not terminated before end of line",
                        line,
                        column,
                    ))
                }
                '\\' => {
                    self.bump();
                    self.escape(&mut out)?;
                }
                '$' if self.peek_byte_at(1) == Some(b'{') => {
                    braces += 1;
                    out.push_str("${");
                    self.bump();
                    self.bump();
                }
                '{' if braces > 0 => {
                    braces += 1;
                    out.push('{');
                    self.bump();
                }
                '}' if braces > 0 => {
                    braces -= 1;
                    out.push('}');
                    self.bump();
                }
                _ => {
                    out.push(character);
                    self.bump_char();
                }
            }
        }
    }

    /// An escape sequence; the backslash has been consumed.
    fn escape(&mut self, out: &mut String) -> Result<(), HclError> {
        let (line, column) = (self.line, self.column.saturating_sub(1));
        let Some(byte) = self.bump() else {
            return Err(HclError::new("string not terminated", line, column));
        };
        let simple = match byte {
            b'"' => Some('"'),
            b'\\' => Some('\\'),
            b'/' => Some('/'),
            b'n' => Some('\n'),
            b't' => Some('\t'),
            b'r' => Some('\r'),
            b'a' => Some('\u{7}'),
            b'b' => Some('\u{8}'),
            b'f' => Some('\u{c}'),
            b'v' => Some('\u{b}'),
            _ => None,
        };
        if let Some(character) = simple {
            out.push(character);
            return Ok(());
        }
        let digits = match byte {
            b'u' => 4,
            b'U' => 8,
            _ => {
                return Err(HclError::new(
                    format!("unknown escape sequence `\\{}`", char::from(byte)),
                    line,
                    column,
                ))
            }
        };
        let mut code = 0u32;
        for _ in 0..digits {
            let digit = self
                .peek_byte()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| {
                    HclError::new(
                        format!("escape `\\{}` needs {digits} hex digits", char::from(byte)),
                        line,
                        column,
                    )
                })?;
            self.bump();
            code = code.saturating_mul(16).saturating_add(digit);
        }
        let character = char::from_u32(code).ok_or_else(|| {
            HclError::new(
                format!("escape `\\{}` is not a valid character", char::from(byte)),
                line,
                column,
            )
        })?;
        out.push(character);
        Ok(())
    }

    /// A heredoc: `<<EOF` or `<<-EOF`, a newline, lines, then the anchor alone on a line.
    fn heredoc(&mut self) -> Result<String, HclError> {
        let (line, column) = (self.line, self.column);
        self.bump();
        self.bump();
        let indented = self.peek_byte() == Some(b'-');
        if indented {
            self.bump();
        }
        let anchor_start = self.position;
        while is_ident_continue(self.current_char()) {
            self.bump_char();
        }
        let anchor = self
            .text
            .get(anchor_start..self.position)
            .unwrap_or_default();
        if anchor.is_empty() {
            return Err(HclError::new(
                "heredoc needs an anchor name after `<<`",
                line,
                column,
            ));
        }
        if self.peek_byte() == Some(b'\r') {
            self.bump();
        }
        if self.bump() != Some(b'\n') {
            return Err(HclError::new(
                format!("heredoc anchor `{anchor}` must be followed by a newline"),
                line,
                column,
            ));
        }
        let mut lines: Vec<&str> = Vec::new();
        loop {
            if self.peek_byte().is_none() {
                return Err(HclError::new(
                    format!("heredoc not terminated (missing `{anchor}`)"),
                    line,
                    column,
                ));
            }
            let start = self.position;
            while let Some(byte) = self.peek_byte() {
                if byte == b'\n' {
                    break;
                }
                self.bump();
            }
            let text_line = self.text.get(start..self.position).unwrap_or_default();
            let text_line = text_line.strip_suffix('\r').unwrap_or(text_line);
            if text_line.trim_start_matches([' ', '\t']) == anchor {
                if indented {
                    let indent = text_line.strip_suffix(anchor).unwrap_or_default();
                    return Ok(unindent(&lines, indent));
                }
                let mut out = String::new();
                for content in &lines {
                    out.push_str(content);
                    out.push('\n');
                }
                return Ok(out);
            }
            lines.push(text_line);
            // Consume the newline (absent at end of input, caught above).
            self.bump();
        }
    }

    fn number(&mut self) -> Result<Number, HclError> {
        let (line, column) = (self.line, self.column);
        let start = self.position;
        if self.peek_byte() == Some(b'-') {
            self.bump();
        }
        if !matches!(self.peek_byte(), Some(b'0'..=b'9')) {
            return Err(HclError::new("expected a digit after '-'", line, column));
        }
        if self.peek_byte() == Some(b'0') && matches!(self.peek_byte_at(1), Some(b'x' | b'X')) {
            self.bump();
            self.bump();
            let digits_start = self.position;
            while matches!(self.peek_byte(), Some(b) if b.is_ascii_hexdigit()) {
                self.bump();
            }
            let digits = self
                .text
                .get(digits_start..self.position)
                .unwrap_or_default();
            let negative = self.text.get(start..start + 1) == Some("-");
            return i64::from_str_radix(digits, 16)
                .map(|value| Number::Int(if negative { -value } else { value }))
                .map_err(|_| HclError::new("invalid hexadecimal number", line, column));
        }
        let mut float = false;
        while matches!(self.peek_byte(), Some(b'0'..=b'9')) {
            self.bump();
        }
        if self.peek_byte() == Some(b'.') && matches!(self.peek_byte_at(1), Some(b'0'..=b'9')) {
            float = true;
            self.bump();
            while matches!(self.peek_byte(), Some(b'0'..=b'9')) {
                self.bump();
            }
        }
        if matches!(self.peek_byte(), Some(b'e' | b'E')) {
            float = true;
            self.bump();
            if matches!(self.peek_byte(), Some(b'+' | b'-')) {
                self.bump();
            }
            if !matches!(self.peek_byte(), Some(b'0'..=b'9')) {
                return Err(HclError::new("invalid number exponent", line, column));
            }
            while matches!(self.peek_byte(), Some(b'0'..=b'9')) {
                self.bump();
            }
        }
        if is_ident_continue(self.current_char()) {
            return Err(HclError::new(
                "invalid number (letters directly after digits)",
                line,
                column,
            ));
        }
        let text = self.text.get(start..self.position).unwrap_or_default();
        if float {
            text.parse::<f64>()
                .map(Number::Float)
                .map_err(|_| HclError::new("invalid number", line, column))
        } else {
            text.parse::<i64>()
                .map(Number::Int)
                .map_err(|_| HclError::new("integer out of range", line, column))
        }
    }
}

/// HCL1's `<<-` rule: if every line starts with the closing anchor's
/// indentation, remove it; otherwise keep the lines as they are.
fn unindent(lines: &[&str], indent: &str) -> String {
    let all_indented = lines.iter().all(|line| line.starts_with(indent));
    let mut out = String::new();
    for line in lines {
        let line = if all_indented {
            line.get(indent.len()..).unwrap_or_default()
        } else {
            line
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn is_ident_start(character: Option<char>) -> bool {
    matches!(character, Some(c) if c.is_alphabetic() || c == '_')
}

fn is_ident_continue(character: Option<char>) -> bool {
    matches!(character, Some(c) if c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

// ---------------------------------------------------------------------------
// Parser

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    /// Closing bracket positions, when the caller asked for them.
    closings: Option<Vec<Closing>>,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<&Token, HclError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        match &self.peeked {
            Some(token) => Ok(token),
            None => Err(self.lexer.error("internal parser error")),
        }
    }

    fn next(&mut self) -> Result<Token, HclError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lexer.next_token(),
        }
    }

    fn enter(depth: usize, line: u32, column: u32) -> Result<usize, HclError> {
        if depth >= MAX_DEPTH {
            Err(HclError::new(
                format!("nesting too deep (more than {MAX_DEPTH} levels)"),
                line,
                column,
            ))
        } else {
            Ok(depth + 1)
        }
    }

    /// Items until end of input (top level) or the closing brace (nested).
    fn parse_body(
        &mut self,
        depth: usize,
        line: u32,
        column: u32,
        nested: bool,
    ) -> Result<Body, HclError> {
        let mut items = Vec::new();
        loop {
            let token = self.peek()?;
            match token.kind {
                TokenKind::Eof if !nested => break,
                TokenKind::Eof => {
                    return Err(HclError::new(
                        "expected '}' to close the object opened here",
                        line,
                        column,
                    ))
                }
                TokenKind::RightBrace if nested => {
                    let token = self.next()?;
                    self.record_closing((line, column), &token);
                    break;
                }
                _ => {}
            }
            items.push(self.parse_item(depth)?);
            if self.peek()?.kind == TokenKind::Comma {
                self.next()?;
            }
        }
        Ok(Body {
            items,
            line,
            column,
        })
    }

    fn parse_item(&mut self, depth: usize) -> Result<Item, HclError> {
        let token = self.next()?;
        let (line, column) = (token.line, token.column);
        let key = match token.kind {
            TokenKind::Ident(key) | TokenKind::Str(key) => key,
            other => {
                return Err(HclError::new(
                    format!("expected a key, found {}", other.describe()),
                    token.line,
                    token.column,
                ))
            }
        };
        let mut labels = Vec::new();
        loop {
            let token = self.next()?;
            match token.kind {
                TokenKind::Ident(label) | TokenKind::Str(label) => labels.push(label),
                TokenKind::Assign if labels.is_empty() => {
                    let value = self.parse_value(depth)?;
                    return Ok(Item {
                        key,
                        labels,
                        value,
                        block: false,
                        line,
                        column,
                    });
                }
                TokenKind::Assign => {
                    return Err(HclError::new(
                        format!("expected '{{' after the labels of block {key:?}, found '='"),
                        token.line,
                        token.column,
                    ))
                }
                TokenKind::LeftBrace => {
                    let inner = Self::enter(depth, token.line, token.column)?;
                    let body = self.parse_body(inner, token.line, token.column, true)?;
                    return Ok(Item {
                        key,
                        labels,
                        value: Value {
                            kind: ValueKind::Object(body),
                            line: token.line,
                            column: token.column,
                        },
                        block: true,
                        line,
                        column,
                    });
                }
                other => {
                    return Err(HclError::new(
                        format!(
                            "expected '=' or '{{' after key {key:?}, found {}",
                            other.describe()
                        ),
                        token.line,
                        token.column,
                    ))
                }
            }
        }
    }

    fn parse_value(&mut self, depth: usize) -> Result<Value, HclError> {
        let token = self.next()?;
        let (line, column) = (token.line, token.column);
        let kind = match token.kind {
            TokenKind::Str(string) => ValueKind::String(string),
            TokenKind::Number(number) => ValueKind::Number(number),
            TokenKind::Ident(ident) if ident == "true" => ValueKind::Bool(true),
            TokenKind::Ident(ident) if ident == "false" => ValueKind::Bool(false),
            TokenKind::Ident(ident) => {
                return Err(HclError::new(
                    format!(
                        "expected a value, found identifier `{ident}` (strings must be quoted)"
                    ),
                    line,
                    column,
                ))
            }
            TokenKind::LeftBracket => {
                let inner = Self::enter(depth, line, column)?;
                ValueKind::List(self.parse_list(inner, (line, column))?)
            }
            TokenKind::LeftBrace => {
                let inner = Self::enter(depth, line, column)?;
                ValueKind::Object(self.parse_body(inner, line, column, true)?)
            }
            other => {
                return Err(HclError::new(
                    format!("expected a value, found {}", other.describe()),
                    line,
                    column,
                ))
            }
        };
        Ok(Value { kind, line, column })
    }

    fn record_closing(&mut self, open: (u32, u32), token: &Token) {
        if let Some(closings) = self.closings.as_mut() {
            closings.push(Closing {
                open,
                close: (token.line, token.column),
            });
        }
    }

    /// List elements after '[': values separated by commas, trailing comma allowed.
    fn parse_list(&mut self, depth: usize, open: (u32, u32)) -> Result<Vec<Value>, HclError> {
        let mut values = Vec::new();
        loop {
            if self.peek()?.kind == TokenKind::RightBracket {
                let token = self.next()?;
                self.record_closing(open, &token);
                return Ok(values);
            }
            values.push(self.parse_value(depth)?);
            let token = self.next()?;
            match token.kind {
                TokenKind::Comma => {}
                TokenKind::RightBracket => {
                    self.record_closing(open, &token);
                    return Ok(values);
                }
                other => {
                    return Err(HclError::new(
                        format!("expected ',' or ']' in list, found {}", other.describe()),
                        token.line,
                        token.column,
                    ))
                }
            }
        }
    }
}
