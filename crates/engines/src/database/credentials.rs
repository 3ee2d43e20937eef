//! What the database engine generates and how it puts values into SQL: usernames from a
//! template, passwords from a policy, and the quoting of identifiers and literals.
//!
//! Generated usernames only ever contain ASCII letters, digits, `-` and `_` (a role name is
//! sanitised before it enters a username), so they are safe inside any quoting. Values that
//! come from elsewhere (static usernames, passwords from a custom policy) are escaped for the
//! dialect when substituted, and names that could end a quoted context are refused.

use rand::rngs::OsRng;
use rand::seq::SliceRandom;
use ward_core::Error;
use zeroize::Zeroizing;

use super::connection::Dialect;

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A password policy: a length and character classes, each with a minimum count.
///
/// Written like Vault's password policies (HCL), of which this subset is understood:
/// `length = 24` and any number of `rule "charset" { charset = "..." min-chars = 1 }`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PasswordPolicy {
    pub(crate) length: usize,
    pub(crate) rules: Vec<(Vec<char>, usize)>,
}

impl Default for PasswordPolicy {
    /// Vault's default: 20 characters with at least one lowercase letter, one uppercase
    /// letter, one digit and one dash.
    fn default() -> Self {
        PasswordPolicy {
            length: 20,
            rules: vec![
                (LOWER.chars().collect(), 1),
                (UPPER.chars().collect(), 1),
                (DIGITS.chars().collect(), 1),
                (vec!['-'], 1),
            ],
        }
    }
}

impl PasswordPolicy {
    /// Parses the HCL subset described on the type; an empty text is the default policy.
    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        if text.trim().is_empty() {
            return Ok(PasswordPolicy::default());
        }
        let invalid = |why: &str| Error::invalid(format!("invalid password_policy: {why}"));
        let mut tokens = tokenize(text)
            .map_err(|e| invalid(&e))?
            .into_iter()
            .peekable();
        let mut length = None;
        let mut rules = Vec::new();
        while let Some(token) = tokens.next() {
            match token.as_str() {
                "length" => {
                    expect(&mut tokens, "=").map_err(|e| invalid(&e))?;
                    let value = tokens
                        .next()
                        .ok_or_else(|| invalid("length needs a value"))?;
                    length = Some(
                        value
                            .parse::<usize>()
                            .map_err(|_| invalid("length must be a number"))?,
                    );
                }
                "rule" => {
                    let kind = tokens.next().ok_or_else(|| invalid("rule needs a type"))?;
                    if kind != "\"charset\"" {
                        return Err(invalid("only charset rules are supported"));
                    }
                    expect(&mut tokens, "{").map_err(|e| invalid(&e))?;
                    let mut charset = None;
                    let mut min = 0;
                    loop {
                        let key = tokens.next().ok_or_else(|| invalid("unclosed rule"))?;
                        if key == "}" {
                            break;
                        }
                        expect(&mut tokens, "=").map_err(|e| invalid(&e))?;
                        let value = tokens
                            .next()
                            .ok_or_else(|| invalid("a rule field needs a value"))?;
                        match key.as_str() {
                            "charset" => {
                                let chars: Vec<char> = unquote(&value).chars().collect();
                                charset = Some(chars);
                            }
                            "min-chars" | "min_chars" => {
                                min = value
                                    .parse()
                                    .map_err(|_| invalid("min-chars must be a number"))?;
                            }
                            other => return Err(invalid(&format!("unknown rule field {other}"))),
                        }
                    }
                    let mut charset = charset.ok_or_else(|| invalid("a rule needs a charset"))?;
                    charset.sort_unstable();
                    charset.dedup();
                    if charset.is_empty() || charset.iter().any(|c| c.is_control()) {
                        return Err(invalid("a charset must hold printable characters"));
                    }
                    rules.push((charset, min));
                }
                other => return Err(invalid(&format!("unexpected {other}"))),
            }
        }
        let length = length.ok_or_else(|| invalid("length is required"))?;
        if !(4..=100).contains(&length) {
            return Err(invalid("length must be between 4 and 100"));
        }
        if rules.is_empty() {
            return Err(invalid("at least one charset rule is required"));
        }
        if rules.iter().map(|(_, min)| min).sum::<usize>() > length {
            return Err(invalid(
                "the rules need more characters than the length allows",
            ));
        }
        Ok(PasswordPolicy { length, rules })
    }

    /// A fresh password from the operating system's generator.
    pub(crate) fn generate(&self) -> Zeroizing<String> {
        let mut rng = OsRng;
        let mut chars: Zeroizing<Vec<char>> = Zeroizing::new(Vec::with_capacity(self.length));
        let mut all: Vec<char> = Vec::new();
        for (charset, min) in &self.rules {
            for _ in 0..*min {
                if let Some(c) = charset.choose(&mut rng) {
                    chars.push(*c);
                }
            }
            all.extend(charset.iter().copied());
        }
        all.sort_unstable();
        all.dedup();
        while chars.len() < self.length {
            match all.choose(&mut rng) {
                Some(c) => chars.push(*c),
                None => break,
            }
        }
        chars.shuffle(&mut rng);
        Zeroizing::new(chars.iter().collect())
    }
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() || c == ',' {
            chars.next();
        } else if c == '#' {
            while chars.next().is_some_and(|c| c != '\n') {}
        } else if matches!(c, '=' | '{' | '}') {
            out.push(c.to_string());
            chars.next();
        } else if c == '"' {
            let mut token = String::from('"');
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some(escaped) => token.push(escaped),
                        None => return Err("unterminated string".into()),
                    },
                    Some('"') => break,
                    Some(other) => token.push(other),
                    None => return Err("unterminated string".into()),
                }
            }
            token.push('"');
            out.push(token);
        } else {
            let mut token = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || matches!(c, '=' | '{' | '}' | '"' | ',') {
                    break;
                }
                token.push(c);
                chars.next();
            }
            out.push(token);
        }
    }
    Ok(out)
}

fn expect(tokens: &mut impl Iterator<Item = String>, want: &str) -> Result<(), String> {
    match tokens.next() {
        Some(t) if t == want => Ok(()),
        other => Err(format!(
            "expected {want}, found {}",
            other.unwrap_or_else(|| "the end".into())
        )),
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// Inputs of a username template.
pub(crate) struct NameInputs<'a> {
    pub(crate) display_name: &'a str,
    pub(crate) role_name: &'a str,
    pub(crate) unix_time: i64,
}

/// The default username template of a dialect, in the shape of Vault's.
pub(crate) fn default_username_template(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => {
            "v-{{.DisplayName | truncate 8}}-{{.RoleName | truncate 8}}-{{random 20}}-{{unix_time}}"
        }
        Dialect::Mysql => {
            "v-{{.DisplayName | truncate 4}}-{{.RoleName | truncate 4}}-{{random 20}}"
        }
        Dialect::MysqlLegacy => "v-{{.RoleName | truncate 4}}-{{random 20}}",
    }
}

/// Renders a username template. Understood: literal text and `{{.RoleName}}`,
/// `{{.DisplayName}}`, `{{random N}}`, `{{unix_time}}`, each optionally followed by
/// `| truncate N`, `| lowercase` or `| uppercase`. Names are sanitised to identifier-safe
/// characters; a template whose own text would put anything else in a username is refused.
pub(crate) fn render_username(
    template: &str,
    inputs: &NameInputs<'_>,
    max_len: usize,
) -> Result<String, Error> {
    let invalid = |why: String| Error::invalid(format!("invalid username_template: {why}"));
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| invalid("unclosed {{".into()))?;
        let expression = after[..end].trim();
        rest = &after[end + 2..];
        let mut parts = expression.split('|').map(str::trim);
        let head = parts.next().unwrap_or_default();
        let mut value = match head.split_whitespace().collect::<Vec<_>>().as_slice() {
            [".RoleName"] => sanitize(inputs.role_name),
            [".DisplayName"] => sanitize(inputs.display_name),
            ["unix_time"] => inputs.unix_time.to_string(),
            ["random", n] => {
                let n: usize = n
                    .parse()
                    .map_err(|_| invalid(format!("bad random length {n}")))?;
                random_base62(n.min(128))
            }
            _ => return Err(invalid(format!("unknown expression {{{{{expression}}}}}"))),
        };
        for filter in parts {
            value = match filter.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["truncate", n] => {
                    let n: usize = n
                        .parse()
                        .map_err(|_| invalid(format!("bad truncate length {n}")))?;
                    value.chars().take(n).collect()
                }
                ["lowercase"] => value.to_lowercase(),
                ["uppercase"] => value.to_uppercase(),
                _ => return Err(invalid(format!("unknown filter {filter}"))),
            };
        }
        out.push_str(&value);
    }
    out.push_str(rest);
    let name: String = out.chars().take(max_len).collect();
    if name.is_empty() {
        return Err(invalid("the username is empty".into()));
    }
    check_identifier(&name).map_err(invalid)?;
    Ok(name)
}

/// Refuses names that could end a quoted identifier or literal in any dialect, or that
/// carry control characters. Spaces and other Unicode are fine inside quotes.
pub(crate) fn check_identifier(name: &str) -> Result<(), String> {
    if let Some(bad) = name
        .chars()
        .find(|c| matches!(c, '"' | '\'' | '`' | '\\' | ';') || c.is_control())
    {
        return Err(format!(
            "the name {name:?} contains {bad:?}, which is not allowed in a database user name"
        ));
    }
    Ok(())
}

/// Letters, digits, `-` and `_` kept; anything else becomes `-`.
fn sanitize(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn random_base62(n: usize) -> String {
    let mut rng = OsRng;
    (0..n)
        .filter_map(|_| BASE62.choose(&mut rng).map(|b| *b as char))
        .collect()
}

/// `"name"` with embedded quotes doubled (PostgreSQL identifiers).
pub(crate) fn quote_ident_pg(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'value'` as a SQL string literal for the dialect.
pub(crate) fn quote_literal(dialect: Dialect, value: &str) -> String {
    format!("'{}'", escape_literal(dialect, value))
}

/// The inside of a string literal: quotes doubled, and backslashes too for MySQL (which
/// treats them as escapes unless NO_BACKSLASH_ESCAPES is set).
pub(crate) fn escape_literal(dialect: Dialect, value: &str) -> String {
    let doubled = value.replace('\'', "''");
    match dialect {
        Dialect::Postgres => doubled,
        Dialect::Mysql | Dialect::MysqlLegacy => doubled.replace('\\', "\\\\"),
    }
}

/// Substitutes `{{name}}`, `{{username}}`, `{{password}}` and `{{expiration}}` in one
/// statement. Passwords are escaped as literal contents (they sit between quotes in every
/// statement Vault documents); names were checked by [`check_identifier`].
pub(crate) fn substitute(
    dialect: Dialect,
    statement: &str,
    name: &str,
    password: Option<&str>,
    expiration: Option<&str>,
) -> Zeroizing<String> {
    let mut out = statement
        .replace("{{name}}", name)
        .replace("{{username}}", name);
    if let Some(expiration) = expiration {
        out = out.replace("{{expiration}}", expiration);
    }
    if let Some(password) = password {
        out = out.replace("{{password}}", &escape_literal(dialect, password));
    }
    Zeroizing::new(out)
}

/// Splits statements on `;` the way Vault does (before substitution, so that a `;` inside a
/// password cannot split a statement), dropping empty pieces.
pub(crate) fn split_statements(statements: &[String]) -> Vec<String> {
    statements
        .iter()
        .flat_map(|s| s.split(';'))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_passwords_meet_every_rule() {
        let policy = PasswordPolicy::default();
        for _ in 0..200 {
            let password = policy.generate();
            assert_eq!(password.chars().count(), 20);
            assert!(password.chars().any(|c| c.is_ascii_lowercase()));
            assert!(password.chars().any(|c| c.is_ascii_uppercase()));
            assert!(password.chars().any(|c| c.is_ascii_digit()));
            assert!(password.contains('-'));
        }
    }

    #[test]
    fn custom_policy_is_parsed_and_honoured() {
        let policy = PasswordPolicy::parse(
            r#"
            length = 32
            rule "charset" { charset = "abc" min-chars = 2 }
            rule "charset" {
              charset = "!'\\"
              min-chars = 3
            }"#,
        )
        .expect("policy");
        assert_eq!(policy.length, 32);
        let password = policy.generate();
        assert_eq!(password.chars().count(), 32);
        assert!(password.chars().all(|c| "abc!'\\".contains(c)));
        assert!(password.chars().filter(|c| "!'\\".contains(*c)).count() >= 3);
        for bad in [
            "length = 2\nrule \"charset\" { charset = \"a\" }",
            "rule \"charset\" { charset = \"a\" }",
            "length = 10",
            "length = 5 rule \"charset\" { charset = \"a\" min-chars = 9 }",
            "length = x",
        ] {
            assert!(PasswordPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usernames_follow_vaults_shape_and_limits() {
        let inputs = NameInputs {
            display_name: "token",
            role_name: "read-only\"; DROP TABLE x; --",
            unix_time: 1_700_000_000,
        };
        let pg =
            render_username(default_username_template(Dialect::Postgres), &inputs, 63).expect("pg");
        let parts: Vec<&str> = pg.split('-').collect();
        assert_eq!(parts[0], "v");
        assert_eq!(parts[1], "token");
        assert!(pg.len() <= 63);
        assert!(pg.ends_with("-1700000000"), "{pg}");
        assert!(
            pg.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{pg}"
        );
        let mysql =
            render_username(default_username_template(Dialect::Mysql), &inputs, 32).expect("mysql");
        assert!(
            mysql.len() <= 32 && mysql.starts_with("v-toke-read-"),
            "{mysql}"
        );
        let legacy = render_username(default_username_template(Dialect::MysqlLegacy), &inputs, 16)
            .expect("legacy");
        assert_eq!(legacy.len(), 16);
        assert!(
            render_username("x'{{.RoleName}}", &inputs, 63).is_err(),
            "a template may not add quotes"
        );
        assert!(render_username("{{nope}}", &inputs, 63).is_err());
        assert_eq!(
            render_username("app_{{.RoleName | truncate 4 | uppercase}}", &inputs, 63)
                .expect("custom"),
            "app_READ"
        );
    }

    #[test]
    fn quoting_and_substitution() {
        assert_eq!(quote_ident_pg("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal(Dialect::Postgres, "it's"), "'it''s'");
        assert_eq!(quote_literal(Dialect::Mysql, "a\\'b"), "'a\\\\''b'");
        let sql = substitute(
            Dialect::Postgres,
            "CREATE ROLE \"{{name}}\" PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'",
            "v-x",
            Some("p'w"),
            Some("2030-01-01 00:00:00+00"),
        );
        assert_eq!(
            sql.as_str(),
            "CREATE ROLE \"v-x\" PASSWORD 'p''w' VALID UNTIL '2030-01-01 00:00:00+00'"
        );
        assert_eq!(
            split_statements(&["a; b;".into(), " ;c".into()]),
            vec!["a", "b", "c"]
        );
        assert!(check_identifier("ünïcode name").is_ok());
        assert!(check_identifier("x\";--").is_err());
    }
}
