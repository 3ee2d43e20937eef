//! A consul-template-compatible subset of Go's `text/template`, written for the agent (there is
//! no Go here).
//!
//! Supported: text and `{{ }}` actions with `{{-`/`-}}` trimming and `{{/* comments */}}`;
//! pipelines with `|`; fields (`.Data.data.key`), variables (`$v`, `$v.field`, `$`), `:=` and
//! `=`; string, number and boolean literals; parenthesised pipelines; `if`/`else if`/`else`,
//! `with`/`else`, `range` (with `$k, $v :=`, `$v :=`, or none) and `end`. Functions: `secret`,
//! `env`, `toJSON`, `toJSONPretty`, `base64Encode`, `base64Decode`, `base64URLEncode`,
//! `base64URLDecode`, `index`, `printf` (%s %d %v %q %%), `print`, `trimSpace`, `toUpper`,
//! `toLower`, `contains`, `split`, `join`, `replaceAll`, `len`, `eq`, `ne`, `lt`, `le`, `gt`,
//! `ge`, `not`, `and`, `or`.
//!
//! Values are JSON values. Rendering never blocks: `secret` asks a [`SecretSource`], which
//! answers with what the agent's cache holds now; the render reports which secrets it used and
//! whether any was still pending, and the runner renders again when they change.

use std::collections::BTreeSet;
use std::fmt;
use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::client;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

/// Identifies a secret as a template names it: the path and any `k=v` parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretKey {
    pub path: String,
    pub params: Vec<String>,
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        for param in &self.params {
            write!(f, " {param}")?;
        }
        Ok(())
    }
}

/// What the cache knows about a secret at render time.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The secret as templates see it (`.Data`, `.LeaseID`, ...).
    Ready(Value),
    /// Not fetched yet, or withdrawn: the render is incomplete.
    Pending,
    /// The server says there is nothing at this path.
    Missing,
}

/// The secret cache as seen by a render.
pub trait SecretSource {
    fn lookup(&mut self, key: &SecretKey) -> Lookup;
}

/// A render's outcome.
#[derive(Debug)]
pub struct Rendered {
    pub text: String,
    /// Every secret the template asked for, in order of first use.
    pub dependencies: BTreeSet<SecretKey>,
    /// Some secret was not available yet: do not write this text.
    pub incomplete: bool,
}

/// Options for a render.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// A missing map key, or a missing secret, is an error instead of an empty value.
    pub error_on_missing_key: bool,
}

/// A parse or render error, with the line of the action when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub message: String,
    pub line: usize,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "template line {}: {}", self.line, self.message)
        } else {
            write!(f, "template: {}", self.message)
        }
    }
}

impl std::error::Error for TemplateError {}

impl Template {
    /// Parses `text` with the given delimiters (`{{` and `}}` by default).
    pub fn parse(text: &str, left: &str, right: &str) -> Result<Template, TemplateError> {
        let tokens = lex(text, left, right)?;
        let mut parser = Parser {
            items: tokens,
            position: 0,
        };
        let (nodes, end) = parser.parse_list()?;
        if let Some(end) = end {
            return Err(TemplateError {
                message: format!("unexpected {{{{{end}}}}}"),
                line: parser.line(),
            });
        }
        Ok(Template { nodes })
    }

    /// Renders against the secret source. `Err` only for real errors (a missing key with
    /// `error_on_missing_key`, a bad function call); pending secrets make the render
    /// [`Rendered::incomplete`] instead.
    pub fn render(
        &self,
        source: &mut dyn SecretSource,
        options: RenderOptions,
    ) -> Result<Rendered, TemplateError> {
        self.render_with_dot(source, options, Value::Null)
    }

    /// Renders with `dot` as the initial `.` (the egress proxy renders header values against
    /// the credential secret this way).
    pub fn render_with_dot(
        &self,
        source: &mut dyn SecretSource,
        options: RenderOptions,
        dot: Value,
    ) -> Result<Rendered, TemplateError> {
        let mut state = State {
            source,
            options,
            output: String::new(),
            variables: vec![("$".to_owned(), dot.clone())],
            dependencies: BTreeSet::new(),
            incomplete: false,
            line: 0,
        };
        state.walk(&self.nodes, &dot)?;
        Ok(Rendered {
            text: state.output,
            dependencies: state.dependencies,
            incomplete: state.incomplete,
        })
    }
}

// ---------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Text(String),
    /// The words of one action and the line it starts on.
    Action(Vec<Word>, usize),
}

#[derive(Debug, Clone, PartialEq)]
enum Word {
    Ident(String),
    /// `.a.b` (empty for `.`).
    Field(Vec<String>),
    /// `$name.a.b`.
    Variable(String, Vec<String>),
    Str(String),
    Number(f64),
    Pipe,
    Open,
    Close,
    Declare,
    Assign,
    Comma,
}

fn lex(text: &str, left: &str, right: &str) -> Result<Vec<Token>, TemplateError> {
    let mut tokens = Vec::new();
    let mut rest = text;
    let mut line = 1;
    let mut trim_next_text = false;
    while !rest.is_empty() {
        let Some(start) = rest.find(left) else {
            push_text(&mut tokens, rest, trim_next_text);
            break;
        };
        let mut before = &rest[..start];
        let after_left = &rest[start + left.len()..];
        let trim_left = after_left.starts_with("- ")
            || after_left.starts_with("-\n")
            || after_left.starts_with("-\t");
        if trim_left {
            before = before.trim_end();
        }
        push_text(&mut tokens, before, trim_next_text);
        line += rest[..start].matches('\n').count();
        let inner_start = if trim_left { 1 } else { 0 };
        let inner = &after_left[inner_start..];
        let end = find_action_end(inner, right).ok_or_else(|| TemplateError {
            message: "unclosed action".into(),
            line,
        })?;
        let mut action = &inner[..end];
        trim_next_text = false;
        if action.ends_with(" -") || action.ends_with("\n-") || action.ends_with("\t-") {
            action = &action[..action.len() - 1];
            trim_next_text = true;
        }
        let trimmed = action.trim();
        if !(trimmed.starts_with("/*") && trimmed.ends_with("*/")) {
            let words = lex_action(action, line)?;
            if words.is_empty() {
                return Err(TemplateError {
                    message: "empty action".into(),
                    line,
                });
            }
            tokens.push(Token::Action(words, line));
        }
        line += action.matches('\n').count();
        let consumed = start + left.len() + inner_start + end + right.len();
        rest = &rest[consumed..];
    }
    Ok(tokens)
}

fn push_text(tokens: &mut Vec<Token>, text: &str, trim_start: bool) {
    let text = if trim_start { text.trim_start() } else { text };
    if !text.is_empty() {
        tokens.push(Token::Text(text.to_owned()));
    }
}

/// The end of an action, skipping delimiters inside string literals.
fn find_action_end(inner: &str, right: &str) -> Option<usize> {
    let bytes = inner.as_bytes();
    let mut index = 0;
    let mut quote: Option<u8> = None;
    while index < bytes.len() {
        let byte = bytes[index];
        match quote {
            Some(q) => {
                if byte == b'\\' && q == b'"' {
                    index += 1;
                } else if byte == q {
                    quote = None;
                }
            }
            None => {
                if byte == b'"' || byte == b'`' {
                    quote = Some(byte);
                } else if inner[index..].starts_with(right) {
                    return Some(index);
                }
            }
        }
        index += 1;
    }
    None
}

fn lex_action(action: &str, line: usize) -> Result<Vec<Word>, TemplateError> {
    let error = |message: String| TemplateError { message, line };
    let chars: Vec<char> = action.chars().collect();
    let mut words = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        match c {
            c if c.is_whitespace() => index += 1,
            '|' => {
                words.push(Word::Pipe);
                index += 1;
            }
            '(' => {
                words.push(Word::Open);
                index += 1;
            }
            ')' => {
                words.push(Word::Close);
                index += 1;
            }
            ',' => {
                words.push(Word::Comma);
                index += 1;
            }
            ':' if chars.get(index + 1) == Some(&'=') => {
                words.push(Word::Declare);
                index += 2;
            }
            '=' => {
                words.push(Word::Assign);
                index += 1;
            }
            '"' => {
                let mut value = String::new();
                index += 1;
                loop {
                    let Some(&next) = chars.get(index) else {
                        return Err(error("unterminated string".into()));
                    };
                    index += 1;
                    match next {
                        '"' => break,
                        '\\' => {
                            let escaped = chars
                                .get(index)
                                .copied()
                                .ok_or_else(|| error("unterminated string".into()))?;
                            index += 1;
                            value.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '0' => '\0',
                                other => other,
                            });
                        }
                        other => value.push(other),
                    }
                }
                words.push(Word::Str(value));
            }
            '`' => {
                let mut value = String::new();
                index += 1;
                loop {
                    let Some(&next) = chars.get(index) else {
                        return Err(error("unterminated raw string".into()));
                    };
                    index += 1;
                    if next == '`' {
                        break;
                    }
                    value.push(next);
                }
                words.push(Word::Str(value));
            }
            '.' => {
                let (path, next) = lex_field_chain(&chars, index);
                words.push(Word::Field(path));
                index = next;
            }
            '$' => {
                let mut end = index + 1;
                while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
                    end += 1;
                }
                let name: String = chars[index..end].iter().collect();
                let (path, next) = if chars.get(end) == Some(&'.') {
                    lex_field_chain(&chars, end)
                } else {
                    (Vec::new(), end)
                };
                words.push(Word::Variable(name, path));
                index = next;
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(index + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let mut end = index + 1;
                while end < chars.len() && (chars[end].is_ascii_digit() || chars[end] == '.') {
                    end += 1;
                }
                let text: String = chars[index..end].iter().collect();
                let number = text
                    .parse::<f64>()
                    .map_err(|_| error(format!("bad number `{text}`")))?;
                words.push(Word::Number(number));
                index = end;
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut end = index + 1;
                while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
                    end += 1;
                }
                words.push(Word::Ident(chars[index..end].iter().collect()));
                index = end;
            }
            other => return Err(error(format!("unexpected character `{other}`"))),
        }
    }
    Ok(words)
}

/// `.a.b.c` starting at a dot: the names and the index after them.
fn lex_field_chain(chars: &[char], mut index: usize) -> (Vec<String>, usize) {
    let mut path = Vec::new();
    while chars.get(index) == Some(&'.') {
        let mut end = index + 1;
        while end < chars.len()
            && (chars[end].is_alphanumeric() || chars[end] == '_' || chars[end] == '-')
        {
            end += 1;
        }
        if end == index + 1 {
            index = end;
            break;
        }
        path.push(chars[index + 1..end].iter().collect());
        index = end;
    }
    (path, index)
}

// ---------------------------------------------------------------------------
// Parser

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline, usize),
    If(Vec<(Pipeline, Vec<Node>)>, Vec<Node>, usize),
    With(Pipeline, Vec<Node>, Vec<Node>, usize),
    Range(Pipeline, Vec<Node>, Vec<Node>, usize),
}

#[derive(Debug, Clone)]
struct Pipeline {
    declare: Vec<String>,
    /// `=` (assign to an existing variable) rather than `:=`.
    assign: bool,
    commands: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Arg {
    Field(Vec<String>),
    Variable(String, Vec<String>),
    Literal(Value),
    Function(String),
    Nested(Box<Pipeline>, Vec<String>),
}

struct Parser {
    items: Vec<Token>,
    position: usize,
}

/// What ended a list: `end`, `else`, or `else if ...`/`else with ...`.
#[derive(Debug)]
enum Terminator {
    End,
    Else(Vec<Word>),
}

impl fmt::Display for Terminator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Terminator::End => f.write_str("end"),
            Terminator::Else(_) => f.write_str("else"),
        }
    }
}

impl Parser {
    fn line(&self) -> usize {
        match self.items.get(self.position.saturating_sub(1)) {
            Some(Token::Action(_, line)) => *line,
            _ => 0,
        }
    }

    fn parse_list(&mut self) -> Result<(Vec<Node>, Option<Terminator>), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(token) = self.items.get(self.position).cloned() {
            self.position += 1;
            match token {
                Token::Text(text) => nodes.push(Node::Text(text)),
                Token::Action(words, line) => {
                    let error = |message: String| TemplateError { message, line };
                    match words.first() {
                        Some(Word::Ident(keyword)) if keyword == "end" => {
                            return Ok((nodes, Some(Terminator::End)))
                        }
                        Some(Word::Ident(keyword)) if keyword == "else" => {
                            return Ok((nodes, Some(Terminator::Else(words[1..].to_vec()))))
                        }
                        Some(Word::Ident(keyword)) if keyword == "if" => {
                            nodes.push(self.parse_if(&words[1..], line)?);
                        }
                        Some(Word::Ident(keyword)) if keyword == "with" => {
                            let pipeline = parse_pipeline(&words[1..], line)?;
                            let (body, else_body) = self.parse_branches(line, "with")?;
                            nodes.push(Node::With(pipeline, body, else_body, line));
                        }
                        Some(Word::Ident(keyword)) if keyword == "range" => {
                            let pipeline = parse_pipeline(&words[1..], line)?;
                            if pipeline.declare.len() > 2 {
                                return Err(error("range declares at most two variables".into()));
                            }
                            let (body, else_body) = self.parse_branches(line, "range")?;
                            nodes.push(Node::Range(pipeline, body, else_body, line));
                        }
                        Some(Word::Ident(keyword))
                            if matches!(
                                keyword.as_str(),
                                "define" | "template" | "block" | "break" | "continue"
                            ) =>
                        {
                            return Err(error(format!("`{keyword}` is not supported")));
                        }
                        _ => nodes.push(Node::Action(parse_pipeline(&words, line)?, line)),
                    }
                }
            }
        }
        Ok((nodes, None))
    }

    /// The body and optional plain `else` body of `with` and `range`.
    fn parse_branches(
        &mut self,
        line: usize,
        keyword: &str,
    ) -> Result<(Vec<Node>, Vec<Node>), TemplateError> {
        let (body, end) = self.parse_list()?;
        match end {
            Some(Terminator::End) => Ok((body, Vec::new())),
            Some(Terminator::Else(rest)) if rest.is_empty() => {
                let (else_body, end) = self.parse_list()?;
                match end {
                    Some(Terminator::End) => Ok((body, else_body)),
                    _ => Err(TemplateError {
                        message: format!("`{keyword}` without `end`"),
                        line,
                    }),
                }
            }
            _ => Err(TemplateError {
                message: format!("`{keyword}` without `end`"),
                line,
            }),
        }
    }

    fn parse_if(&mut self, words: &[Word], line: usize) -> Result<Node, TemplateError> {
        let mut branches = vec![(parse_pipeline(words, line)?, Vec::new())];
        loop {
            let (body, end) = self.parse_list()?;
            if let Some(last) = branches.last_mut() {
                last.1 = body;
            }
            match end {
                Some(Terminator::End) => return Ok(Node::If(branches, Vec::new(), line)),
                Some(Terminator::Else(rest)) if rest.is_empty() => {
                    let (else_body, end) = self.parse_list()?;
                    return match end {
                        Some(Terminator::End) => Ok(Node::If(branches, else_body, line)),
                        _ => Err(TemplateError {
                            message: "`if` without `end`".into(),
                            line,
                        }),
                    };
                }
                Some(Terminator::Else(rest)) if matches!(rest.first(), Some(Word::Ident(word)) if word == "if") =>
                {
                    branches.push((parse_pipeline(&rest[1..], line)?, Vec::new()));
                }
                _ => {
                    return Err(TemplateError {
                        message: "`if` without `end`".into(),
                        line,
                    })
                }
            }
        }
    }
}

fn parse_pipeline(words: &[Word], line: usize) -> Result<Pipeline, TemplateError> {
    let error = |message: &str| TemplateError {
        message: message.to_owned(),
        line,
    };
    let mut declare = Vec::new();
    let mut assign = false;
    let mut rest = words;
    // `$a := ...`, `$k, $v := ...`, `$a = ...`
    let declaration_end = words
        .iter()
        .position(|word| matches!(word, Word::Declare | Word::Assign));
    if let Some(end) = declaration_end {
        let names = &words[..end];
        let all_variables = names.iter().all(|word| {
            matches!(word, Word::Variable(_, path) if path.is_empty()) || *word == Word::Comma
        });
        if all_variables && !names.is_empty() {
            for word in names {
                if let Word::Variable(name, _) = word {
                    declare.push(name.clone());
                }
            }
            assign = matches!(words[end], Word::Assign);
            rest = &words[end + 1..];
        }
    }
    if rest.is_empty() {
        return Err(error("missing value"));
    }
    let mut commands = Vec::new();
    let mut current = Vec::new();
    let mut index = 0;
    while index < rest.len() {
        match &rest[index] {
            Word::Pipe => {
                if current.is_empty() {
                    return Err(error("empty command in pipeline"));
                }
                commands.push(std::mem::take(&mut current));
                index += 1;
            }
            Word::Open => {
                let mut depth = 0;
                let mut end = index;
                for (offset, word) in rest[index..].iter().enumerate() {
                    match word {
                        Word::Open => depth += 1,
                        Word::Close => {
                            depth -= 1;
                            if depth == 0 {
                                end = index + offset;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                if depth != 0 {
                    return Err(error("unclosed `(`"));
                }
                let inner = parse_pipeline(&rest[index + 1..end], line)?;
                // `(...).field` is lexed as a following Field word.
                let mut path = Vec::new();
                let mut next = end + 1;
                if let Some(Word::Field(field_path)) = rest.get(next) {
                    if !field_path.is_empty() {
                        path = field_path.clone();
                        next += 1;
                    }
                }
                current.push(Arg::Nested(Box::new(inner), path));
                index = next;
            }
            Word::Close => return Err(error("unexpected `)`")),
            Word::Field(path) => {
                current.push(Arg::Field(path.clone()));
                index += 1;
            }
            Word::Variable(name, path) => {
                current.push(Arg::Variable(name.clone(), path.clone()));
                index += 1;
            }
            Word::Str(text) => {
                current.push(Arg::Literal(Value::String(text.clone())));
                index += 1;
            }
            Word::Number(number) => {
                let value = if number.fract() == 0.0 && number.abs() < 9.0e15 {
                    // The guard keeps the value exactly representable.
                    #[allow(clippy::cast_possible_truncation)]
                    Value::from(*number as i64)
                } else {
                    serde_json::Number::from_f64(*number).map_or(Value::Null, Value::Number)
                };
                current.push(Arg::Literal(value));
                index += 1;
            }
            Word::Ident(name) => {
                current.push(match name.as_str() {
                    "true" => Arg::Literal(Value::Bool(true)),
                    "false" => Arg::Literal(Value::Bool(false)),
                    "nil" => Arg::Literal(Value::Null),
                    _ => Arg::Function(name.clone()),
                });
                index += 1;
            }
            Word::Declare | Word::Assign | Word::Comma => {
                return Err(error("unexpected `:=`, `=` or `,`"))
            }
        }
    }
    if current.is_empty() {
        return Err(error("empty command in pipeline"));
    }
    commands.push(current);
    Ok(Pipeline {
        declare,
        assign,
        commands,
    })
}

// ---------------------------------------------------------------------------
// Evaluation

struct State<'a> {
    source: &'a mut dyn SecretSource,
    options: RenderOptions,
    output: String,
    variables: Vec<(String, Value)>,
    dependencies: BTreeSet<SecretKey>,
    incomplete: bool,
    line: usize,
}

impl State<'_> {
    fn error(&self, message: impl Into<String>) -> TemplateError {
        TemplateError {
            message: message.into(),
            line: self.line,
        }
    }

    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<(), TemplateError> {
        for node in nodes {
            match node {
                Node::Text(text) => self.output.push_str(text),
                Node::Action(pipeline, line) => {
                    self.line = *line;
                    let value = self.pipeline(pipeline, dot)?;
                    if pipeline.declare.is_empty() {
                        write_value(&mut self.output, &value);
                    }
                }
                Node::If(branches, else_body, line) => {
                    let mark = self.variables.len();
                    let mut taken = false;
                    for (condition, body) in branches {
                        self.line = *line;
                        let value = self.pipeline(condition, dot)?;
                        if truthy(&value) {
                            self.walk(body, dot)?;
                            taken = true;
                            break;
                        }
                    }
                    if !taken {
                        self.walk(else_body, dot)?;
                    }
                    self.variables.truncate(mark);
                }
                Node::With(pipeline, body, else_body, line) => {
                    self.line = *line;
                    let mark = self.variables.len();
                    let value = self.pipeline(pipeline, dot)?;
                    if truthy(&value) {
                        self.walk(body, &value)?;
                    } else {
                        self.walk(else_body, dot)?;
                    }
                    self.variables.truncate(mark);
                }
                Node::Range(pipeline, body, else_body, line) => {
                    self.line = *line;
                    let mark = self.variables.len();
                    let plain = Pipeline {
                        declare: Vec::new(),
                        assign: false,
                        commands: pipeline.commands.clone(),
                    };
                    let value = self.pipeline(&plain, dot)?;
                    let entries: Vec<(Value, Value)> = match value {
                        Value::Object(map) => map
                            .into_iter()
                            .map(|(key, value)| (Value::String(key), value))
                            .collect(),
                        Value::Array(list) => list
                            .into_iter()
                            .enumerate()
                            .map(|(index, value)| (Value::from(index), value))
                            .collect(),
                        Value::Null => Vec::new(),
                        other => {
                            return Err(self
                                .error(format!("range can't iterate over {}", go_string(&other))))
                        }
                    };
                    if entries.is_empty() {
                        self.walk(else_body, dot)?;
                    }
                    for (key, value) in entries {
                        let inner_mark = self.variables.len();
                        match pipeline.declare.as_slice() {
                            [only] => self.variables.push((only.clone(), value.clone())),
                            [key_name, value_name] => {
                                self.variables.push((key_name.clone(), key));
                                self.variables.push((value_name.clone(), value.clone()));
                            }
                            _ => {}
                        }
                        self.walk(body, &value)?;
                        self.variables.truncate(inner_mark);
                    }
                    self.variables.truncate(mark);
                }
            }
        }
        Ok(())
    }

    fn pipeline(&mut self, pipeline: &Pipeline, dot: &Value) -> Result<Value, TemplateError> {
        let mut previous: Option<Value> = None;
        for command in &pipeline.commands {
            previous = Some(self.command(command, dot, previous)?);
        }
        let value = previous.unwrap_or(Value::Null);
        if pipeline.assign {
            for name in &pipeline.declare {
                match self.variables.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = value.clone(),
                    None => return Err(self.error(format!("undefined variable {name}"))),
                }
            }
        } else {
            for name in &pipeline.declare {
                self.variables.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn command(
        &mut self,
        args: &[Arg],
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        let Some(first) = args.first() else {
            return Err(self.error("empty command"));
        };
        if let Arg::Function(name) = first {
            let mut values = Vec::with_capacity(args.len());
            for arg in &args[1..] {
                values.push(self.argument(arg, dot)?);
            }
            if let Some(piped) = piped {
                values.push(piped);
            }
            return self.call(name, values);
        }
        if args.len() > 1 || piped.is_some() {
            return Err(self.error("can't give arguments to a non-function"));
        }
        self.argument(first, dot)
    }

    fn argument(&mut self, arg: &Arg, dot: &Value) -> Result<Value, TemplateError> {
        match arg {
            Arg::Field(path) => self.walk_path(dot, path),
            Arg::Variable(name, path) => {
                let value = self
                    .variables
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, value)| value.clone())
                    .ok_or_else(|| self.error(format!("undefined variable {name}")))?;
                self.walk_path(&value, path)
            }
            Arg::Literal(value) => Ok(value.clone()),
            Arg::Function(name) => self.call(name, Vec::new()),
            Arg::Nested(pipeline, path) => {
                let value = self.pipeline(pipeline, dot)?;
                self.walk_path(&value, path)
            }
        }
    }

    fn walk_path(&self, value: &Value, path: &[String]) -> Result<Value, TemplateError> {
        let mut current = value;
        for name in path {
            match current {
                Value::Object(map) => match map.get(name) {
                    Some(next) => current = next,
                    None => {
                        if self.options.error_on_missing_key {
                            return Err(self.error(format!("map has no entry for key \"{name}\"")));
                        }
                        return Ok(Value::Null);
                    }
                },
                Value::Null => {
                    if self.options.error_on_missing_key && !self.incomplete {
                        return Err(self.error(format!("nil value has no field \"{name}\"")));
                    }
                    return Ok(Value::Null);
                }
                other => {
                    return Err(self.error(format!(
                        "can't evaluate field {name} in {}",
                        go_string(other)
                    )))
                }
            }
        }
        Ok(current.clone())
    }

    fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Value, TemplateError> {
        let arity = |count: usize| -> Result<(), TemplateError> {
            if args.len() == count {
                Ok(())
            } else {
                Err(TemplateError {
                    message: format!("{name} takes {count} argument(s), got {}", args.len()),
                    line: self.line,
                })
            }
        };
        match name {
            "secret" => self.secret(args),
            "env" => {
                arity(1)?;
                Ok(Value::String(
                    std::env::var(as_string(&args[0])).unwrap_or_default(),
                ))
            }
            "toJSON" => {
                arity(1)?;
                serde_json::to_string(&args[0])
                    .map(Value::String)
                    .map_err(|error| self.error(error.to_string()))
            }
            "toJSONPretty" => {
                arity(1)?;
                serde_json::to_string_pretty(&args[0])
                    .map(Value::String)
                    .map_err(|error| self.error(error.to_string()))
            }
            "base64Encode" => {
                arity(1)?;
                Ok(Value::String(
                    base64::engine::general_purpose::STANDARD.encode(as_string(&args[0])),
                ))
            }
            "base64URLEncode" => {
                arity(1)?;
                Ok(Value::String(
                    base64::engine::general_purpose::URL_SAFE.encode(as_string(&args[0])),
                ))
            }
            "base64Decode" | "base64URLDecode" => {
                arity(1)?;
                let engine = if name == "base64Decode" {
                    base64::engine::general_purpose::STANDARD
                } else {
                    base64::engine::general_purpose::URL_SAFE
                };
                let bytes = engine
                    .decode(as_string(&args[0]).trim())
                    .map_err(|error| self.error(format!("{name}: {error}")))?;
                String::from_utf8(bytes)
                    .map(Value::String)
                    .map_err(|_| self.error(format!("{name}: not UTF-8")))
            }
            "index" => {
                let Some((first, keys)) = args.split_first() else {
                    return Err(self.error("index needs a value"));
                };
                let mut current = first.clone();
                for key in keys {
                    current = match (&current, key) {
                        (Value::Object(map), key) => match map.get(&as_string(key)) {
                            Some(value) => value.clone(),
                            None if self.options.error_on_missing_key => {
                                return Err(self.error(format!(
                                    "map has no entry for key \"{}\"",
                                    as_string(key)
                                )))
                            }
                            None => Value::Null,
                        },
                        (Value::Array(list), Value::Number(number)) => number
                            .as_u64()
                            .and_then(|index| usize::try_from(index).ok())
                            .and_then(|index| list.get(index).cloned())
                            .ok_or_else(|| self.error("index out of range"))?,
                        (Value::Null, _)
                            if !self.options.error_on_missing_key || self.incomplete =>
                        {
                            Value::Null
                        }
                        _ => return Err(self.error("can't index that value")),
                    };
                }
                Ok(current)
            }
            "printf" => {
                let Some((format, rest)) = args.split_first() else {
                    return Err(self.error("printf needs a format"));
                };
                Ok(Value::String(printf(&as_string(format), rest)))
            }
            "print" => Ok(Value::String(
                args.iter().map(go_string).collect::<Vec<_>>().join(""),
            )),
            "trimSpace" => {
                arity(1)?;
                Ok(Value::String(as_string(&args[0]).trim().to_owned()))
            }
            "toUpper" => {
                arity(1)?;
                Ok(Value::String(as_string(&args[0]).to_uppercase()))
            }
            "toLower" => {
                arity(1)?;
                Ok(Value::String(as_string(&args[0]).to_lowercase()))
            }
            "contains" => {
                // consul-template: `contains "needle" haystack` (haystack usually piped).
                arity(2)?;
                Ok(Value::Bool(
                    as_string(&args[1]).contains(&as_string(&args[0])),
                ))
            }
            "split" => {
                arity(2)?;
                let separator = as_string(&args[0]);
                let text = as_string(&args[1]);
                if text.is_empty() {
                    return Ok(Value::Array(Vec::new()));
                }
                Ok(Value::Array(
                    text.split(separator.as_str())
                        .map(|part| Value::String(part.to_owned()))
                        .collect(),
                ))
            }
            "join" => {
                arity(2)?;
                let separator = as_string(&args[0]);
                let parts: Vec<String> = match &args[1] {
                    Value::Array(list) => list.iter().map(go_string).collect(),
                    other => vec![go_string(other)],
                };
                Ok(Value::String(parts.join(&separator)))
            }
            "replaceAll" => {
                arity(3)?;
                Ok(Value::String(
                    as_string(&args[2]).replace(&as_string(&args[0]), &as_string(&args[1])),
                ))
            }
            "len" => {
                arity(1)?;
                let length = match &args[0] {
                    Value::String(text) => text.len(),
                    Value::Array(list) => list.len(),
                    Value::Object(map) => map.len(),
                    Value::Null => 0,
                    _ => return Err(self.error("len of a non-collection")),
                };
                Ok(Value::from(length))
            }
            "eq" => {
                let Some((first, rest)) = args.split_first() else {
                    return Err(self.error("eq needs arguments"));
                };
                Ok(Value::Bool(rest.iter().any(|other| loose_eq(first, other))))
            }
            "ne" => {
                arity(2)?;
                Ok(Value::Bool(!loose_eq(&args[0], &args[1])))
            }
            "lt" | "le" | "gt" | "ge" => {
                arity(2)?;
                let ordering = compare(&args[0], &args[1])
                    .ok_or_else(|| self.error(format!("{name}: incomparable values")))?;
                Ok(Value::Bool(match name {
                    "lt" => ordering.is_lt(),
                    "le" => ordering.is_le(),
                    "gt" => ordering.is_gt(),
                    _ => ordering.is_ge(),
                }))
            }
            "not" => {
                arity(1)?;
                Ok(Value::Bool(!truthy(&args[0])))
            }
            "and" => Ok(args
                .iter()
                .find(|value| !truthy(value))
                .or(args.last())
                .cloned()
                .unwrap_or(Value::Null)),
            "or" => Ok(args
                .iter()
                .find(|value| truthy(value))
                .or(args.last())
                .cloned()
                .unwrap_or(Value::Null)),
            other => Err(self.error(format!("function \"{other}\" not defined"))),
        }
    }

    fn secret(&mut self, args: Vec<Value>) -> Result<Value, TemplateError> {
        let Some((path, params)) = args.split_first() else {
            return Err(self.error("secret needs a path"));
        };
        let path = as_string(path).trim_matches('/').to_owned();
        if path.is_empty() {
            return Err(self.error("secret needs a path"));
        }
        let params: Vec<String> = params.iter().map(as_string).collect();
        client::parse_params(&params).map_err(|message| self.error(message))?;
        let key = SecretKey { path, params };
        self.dependencies.insert(key.clone());
        match self.source.lookup(&key) {
            Lookup::Ready(value) => Ok(value),
            Lookup::Pending => {
                self.incomplete = true;
                Ok(Value::Null)
            }
            Lookup::Missing => {
                if self.options.error_on_missing_key {
                    Err(self.error(format!("no secret exists at {key}")))
                } else {
                    Ok(Value::Null)
                }
            }
        }
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(boolean) => *boolean,
        Value::Number(number) => number.as_f64().is_some_and(|n| n != 0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(list) => !list.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

fn loose_eq(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => left == right,
    }
}

fn compare(left: &Value, right: &Value) -> Option<std::cmp::Ordering> {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// A value as a function argument that wants a string.
fn as_string(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => go_string(other),
    }
}

/// How Go's `fmt` prints a value (`%v`): maps as `map[k:v]`, lists as `[a b]`, nil as `<nil>`
/// inside collections and nothing at the top level (consul-template renders missing values
/// as empty).
fn go_string(value: &Value) -> String {
    let mut out = String::new();
    write_go(&mut out, value, true);
    out
}

fn write_value(out: &mut String, value: &Value) {
    write_go(out, value, false);
}

fn write_go(out: &mut String, value: &Value, nested: bool) {
    match value {
        Value::Null => {
            if nested {
                out.push_str("<nil>");
            }
        }
        Value::Bool(boolean) => out.push_str(if *boolean { "true" } else { "false" }),
        Value::Number(number) => {
            let _ = write!(out, "{number}");
        }
        Value::String(text) => out.push_str(text),
        Value::Array(list) => {
            out.push('[');
            for (index, item) in list.iter().enumerate() {
                if index > 0 {
                    out.push(' ');
                }
                write_go(out, item, true);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push_str("map[");
            for (index, (key, item)) in map.iter().enumerate() {
                if index > 0 {
                    out.push(' ');
                }
                out.push_str(key);
                out.push(':');
                write_go(out, item, true);
            }
            out.push(']');
        }
    }
}

/// `printf` with the verbs templates use: `%s`, `%d`, `%v`, `%q` and `%%`.
fn printf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('q') => {
                let value = args.next().map(as_string).unwrap_or_default();
                out.push_str(&Value::String(value).to_string());
            }
            Some(verb @ ('s' | 'd' | 'v')) => match args.next() {
                Some(value) => out.push_str(&go_string(value)),
                None => {
                    let _ = write!(out, "%!{verb}(MISSING)");
                }
            },
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// The data map a `secret` call returns for a KV v2 read: `.Data.data` and `.Data.metadata`.
/// Builds the template-facing view (`.Data`, `.LeaseID`, ...) of an API envelope.
pub fn secret_view(envelope: &Value) -> Value {
    let mut view = Map::new();
    let field = |name: &str| envelope.get(name).cloned().unwrap_or(Value::Null);
    view.insert("Data".into(), field("data"));
    view.insert("LeaseID".into(), field("lease_id"));
    view.insert("LeaseDuration".into(), field("lease_duration"));
    view.insert("Renewable".into(), field("renewable"));
    view.insert("RequestID".into(), field("request_id"));
    view.insert("Warnings".into(), field("warnings"));
    view.insert("Auth".into(), field("auth"));
    view.insert("WrapInfo".into(), field("wrap_info"));
    Value::Object(view)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Fixed(HashMap<String, Lookup>);

    impl SecretSource for Fixed {
        fn lookup(&mut self, key: &SecretKey) -> Lookup {
            self.0
                .get(&key.to_string())
                .cloned()
                .unwrap_or(Lookup::Pending)
        }
    }

    fn source() -> Fixed {
        let kv2 = serde_json::json!({
            "data": {"data": {"password": "hunter2", "user": "app", "n": 3},
                     "metadata": {"version": 2}},
            "lease_id": "", "lease_duration": 0, "renewable": false
        });
        let db = serde_json::json!({
            "data": {"username": "v-app-1", "password": "pw"},
            "lease_id": "database/creds/ro/abc", "lease_duration": 3600, "renewable": true
        });
        let mut map = HashMap::new();
        map.insert(
            "secret/data/app".to_owned(),
            Lookup::Ready(secret_view(&kv2)),
        );
        map.insert(
            "database/creds/ro".to_owned(),
            Lookup::Ready(secret_view(&db)),
        );
        map.insert("secret/data/gone".to_owned(), Lookup::Missing);
        map.insert(
            "pki/issue/web common_name=a.example".to_owned(),
            Lookup::Ready(serde_json::json!({"Data": {"certificate": "CERT"}})),
        );
        Fixed(map)
    }

    fn render(text: &str) -> Result<Rendered, TemplateError> {
        Template::parse(text, "{{", "}}")?.render(&mut source(), RenderOptions::default())
    }

    fn render_strict(text: &str) -> Result<Rendered, TemplateError> {
        Template::parse(text, "{{", "}}")?.render(
            &mut source(),
            RenderOptions {
                error_on_missing_key: true,
            },
        )
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("{{ with secret \"secret/data/app\" }}{{ .Data.data.password }}{{ end }}", "hunter2"),
            ("{{ with secret \"database/creds/ro\" }}{{ .Data.username }}:{{ .Data.password }}{{ end }}", "v-app-1:pw"),
            ("{{ with secret \"secret/data/app\" }}{{ range $k, $v := .Data.data }}{{ $k }}={{ $v }};{{ end }}{{ end }}", "n=3;password=hunter2;user=app;"),
            ("{{ with secret \"secret/data/app\" }}{{ .Data.data | toJSON }}{{ end }}", "{\"n\":3,\"password\":\"hunter2\",\"user\":\"app\"}"),
            ("{{ with secret \"secret/data/app\" }}{{ .Data.data.user | base64Encode }}{{ end }}", "YXBw"),
            ("{{ \"YXBw\" | base64Decode }}", "app"),
            ("{{ if eq 1 2 }}a{{ else if eq 2 2 }}b{{ else }}c{{ end }}", "b"),
            ("{{ if false }}a{{ else }}c{{ end }}", "c"),
            ("a  {{- \"b\" -}}  \n c", "abc"),
            ("{{/* comment */}}x", "x"),
            ("{{ $x := \"v\" }}{{ $x }}{{ $x = \"w\" }}{{ $x }}", "vw"),
            ("{{ with secret \"secret/data/app\" }}{{ index .Data.data \"user\" }}{{ end }}", "app"),
            ("{{ printf \"%s-%d\" \"a\" 7 }}", "a-7"),
            ("{{ with secret \"secret/data/app\" }}{{ .Data.data.missing }}{{ end }}", ""),
            ("{{ with secret \"secret/data/gone\" }}yes{{ else }}no{{ end }}", "no"),
            ("{{ with secret \"pki/issue/web\" \"common_name=a.example\" }}{{ .Data.certificate }}{{ end }}", "CERT"),
            ("{{ range $i, $p := split \",\" \"a,b\" }}{{ $i }}{{ $p }}{{ end }}", "0a1b"),
            ("{{ \"a b\" | toUpper | replaceAll \" \" \"_\" }}", "A_B"),
            ("{{ (secret \"secret/data/app\").Data.data.user }}", "app"),
            ("{{ with secret \"secret/data/app\" }}{{ .Data.data.n }}{{ end }}", "3"),
            ("{{ with secret \"secret/data/app\" }}{{ range .Data.data }}.{{ end }}{{ end }}", "..."),
            ("{{ with secret \"secret/data/app\" }}{{ $.x }}{{ .Data.metadata.version }}{{ end }}", "2"),
        ];
        for (text, expected) in cases {
            let rendered = render(text).unwrap_or_else(|error| panic!("{text}: {error}"));
            assert_eq!(&rendered.text, expected, "{text}");
            assert!(!rendered.incomplete, "{text}");
        }
    }

    #[test]
    fn env_function() {
        std::env::set_var("WARD_TEMPLATE_TEST_ENV", "from-env");
        assert_eq!(
            render("{{ env \"WARD_TEMPLATE_TEST_ENV\" }}")
                .expect("env")
                .text,
            "from-env"
        );
    }

    #[test]
    fn pending_secret_marks_incomplete_and_records_dependency() {
        let rendered =
            render("{{ with secret \"kv/other\" }}{{ .Data.x }}{{ end }}").expect("render");
        assert!(rendered.incomplete);
        assert_eq!(rendered.dependencies.len(), 1);
    }

    #[test]
    fn missing_key_errors_when_asked() {
        let error =
            render_strict("{{ with secret \"secret/data/app\" }}{{ .Data.data.nope }}{{ end }}")
                .expect_err("missing key");
        assert!(error.message.contains("nope"), "{error}");
        assert!(render_strict("{{ with secret \"secret/data/gone\" }}x{{ end }}").is_err());
    }

    #[test]
    fn custom_delimiters() {
        let template = Template::parse(
            "<<with secret \"secret/data/app\">><<.Data.data.user>><<end>> {{x}}",
            "<<",
            ">>",
        )
        .expect("parse");
        let rendered = template
            .render(&mut source(), RenderOptions::default())
            .expect("render");
        assert_eq!(rendered.text, "app {{x}}");
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "{{ if true }}",
            "{{ end }}",
            "{{ with }}x{{ end }}",
            "{{ \"unterminated }}",
            "{{ define \"x\" }}{{ end }}",
            "{{",
        ] {
            assert!(Template::parse(bad, "{{", "}}").is_err(), "{bad}");
        }
        let error = render("{{ nosuch 1 }}").expect_err("unknown function");
        assert!(error.message.contains("nosuch"));
    }

    #[test]
    fn render_with_dot_for_header_values() {
        let template =
            Template::parse("Bearer {{ .Data.data.password }}", "{{", "}}").expect("parse");
        let dot = match source().lookup(&SecretKey {
            path: "secret/data/app".into(),
            params: vec![],
        }) {
            Lookup::Ready(value) => value,
            _ => Value::Null,
        };
        let rendered = template
            .render_with_dot(&mut source(), RenderOptions::default(), dot)
            .expect("render");
        assert_eq!(rendered.text, "Bearer hunter2");
    }
}
