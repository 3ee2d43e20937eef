//! A small command-line parser with Vault's habits: `-flag=value`, `-flag value`, `--flag`,
//! boolean flags without a value, flags before or after positional arguments, and `--` to
//! end flags.
//!
//! Each command declares its flags; an unknown flag is an error that names it. A flag may be
//! repeated (`-policy=a -policy=b`); [`Args::value`] gives the last, [`Args::values`] all.
//! `clap` was considered and left out: Vault's single-dash long flags (`-format=json`) and its
//! flags-after-arguments habit are what users type, and clap fights both.

use std::collections::HashMap;

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `-dev`, or `-dev=false`.
    Bool,
    /// `-config=FILE` or `-config FILE`.
    Value,
}

/// The parsed command line of one command.
#[derive(Debug, Default)]
pub(crate) struct Args {
    values: HashMap<String, Vec<String>>,
    pub(crate) positional: Vec<String>,
}

impl Args {
    /// Parses `argv` (without the program and command names) against the known flags.
    pub(crate) fn parse(argv: &[String], flags: &[(&str, Kind)]) -> Result<Args, String> {
        let mut args = Args::default();
        let mut iter = argv.iter();
        while let Some(arg) = iter.next() {
            if arg == "--" {
                args.positional.extend(iter.by_ref().cloned());
                break;
            }
            let Some(flag) = arg
                .strip_prefix("--")
                .or_else(|| arg.strip_prefix('-'))
                .filter(|f| !f.is_empty())
            else {
                args.positional.push(arg.clone());
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (flag, None),
            };
            let Some((_, kind)) = flags.iter().find(|(known, _)| *known == name) else {
                return Err(format!("flag provided but not defined: -{name}"));
            };
            let value = match (kind, inline) {
                (_, Some(value)) => value,
                (Kind::Bool, None) => "true".to_string(),
                (Kind::Value, None) => iter
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("flag needs an argument: -{name}"))?,
            };
            if *kind == Kind::Bool && crate::parse_bool(&value).is_none() {
                return Err(format!("invalid boolean value {value:?} for -{name}"));
            }
            args.values.entry(name.to_string()).or_default().push(value);
        }
        Ok(args)
    }

    /// The last value given for a flag (Vault lets a later flag override an earlier one).
    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|values| values.last())
            .map(String::as_str)
    }

    /// Every value given for a repeatable flag (`-policy=a -policy=b`), in order.
    pub(crate) fn values(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }

    /// Whether the flag was given at all (`-verify` and `-verify=false` both count).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub(crate) fn flag(&self, name: &str) -> bool {
        self.value(name)
            .and_then(crate::parse_bool)
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    const FLAGS: &[(&str, Kind)] = &[
        ("dev", Kind::Bool),
        ("config", Kind::Value),
        ("field", Kind::Value),
    ];

    #[test]
    fn vault_flag_styles() {
        let args = Args::parse(
            &argv(&["-dev", "--config", "a.hcl", "secret/foo", "-field=k", "x=1"]),
            FLAGS,
        )
        .expect("valid");
        assert!(args.flag("dev"));
        assert_eq!(args.value("config"), Some("a.hcl"));
        assert_eq!(args.value("field"), Some("k"));
        assert_eq!(args.positional, argv(&["secret/foo", "x=1"]));
        let args = Args::parse(&argv(&["-field=a", "-field", "b"]), FLAGS).expect("valid");
        assert_eq!(args.value("field"), Some("b"));
        assert_eq!(args.values("field"), argv(&["a", "b"]).as_slice());
        let args =
            Args::parse(&argv(&["-dev=false", "--", "-not-a-flag", "-"]), FLAGS).expect("valid");
        assert!(!args.flag("dev"));
        assert_eq!(args.positional, argv(&["-not-a-flag", "-"]));
        let args = Args::parse(&argv(&["-"]), FLAGS).expect("valid");
        assert_eq!(args.positional, argv(&["-"]));
    }

    #[test]
    fn errors() {
        assert!(Args::parse(&argv(&["-nope"]), FLAGS)
            .expect_err("must fail")
            .contains("-nope"));
        assert!(Args::parse(&argv(&["-config"]), FLAGS)
            .expect_err("must fail")
            .contains("needs an argument"));
        assert!(Args::parse(&argv(&["-dev=maybe"]), FLAGS).is_err());
    }
}
