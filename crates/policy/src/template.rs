//! Templated policy paths: `{{identity.entity.id}}` and friends.
//!
//! This module owns the identity facts a template may use
//! ([`IdentityContext`]) and the substitution itself. Looking the facts up
//! (entity store, aliases, group membership) is the caller's job: core builds
//! an `IdentityContext` for the token and hands it to [`crate::Acl::new`].
//!
//! Substitution must never broaden a grant (GHSA-59w7): a value that is empty
//! or contains `*`, `+`, `/`, `{` or `}` would turn one entity's path into a
//! glob or reach into another entity's subtree, so such a stanza is dropped,
//! exactly like a stanza whose template cannot be resolved.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// What templates may refer to. Everything is empty for a token without an entity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityContext {
    pub entity_id: Option<String>,
    pub entity_name: Option<String>,
    pub entity_metadata: BTreeMap<String, String>,
    /// The entity's aliases, keyed by the auth mount's accessor.
    pub aliases: BTreeMap<String, AliasContext>,
    pub groups: Vec<GroupContext>,
}

/// One alias of the entity, on one auth mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AliasContext {
    pub id: String,
    pub name: String,
    pub metadata: BTreeMap<String, String>,
    pub custom_metadata: BTreeMap<String, String>,
}

/// One group the entity belongs to (directly or through a parent group).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupContext {
    pub id: String,
    pub name: String,
    pub metadata: BTreeMap<String, String>,
}

/// Why a templated path was not usable; the stanza then matches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// `{{` without a matching `}}`.
    Unterminated,
    /// The placeholder is not one Vault knows, or names a fact the identity lacks.
    Unresolved { placeholder: String },
    /// The value is empty or would change the pattern's meaning.
    UnsafeValue { placeholder: String },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Unterminated => f.write_str("`{{` without a closing `}}`"),
            TemplateError::Unresolved { placeholder } => {
                write!(f, "cannot resolve `{{{{{placeholder}}}}}`")
            }
            TemplateError::UnsafeValue { placeholder } => write!(
                f,
                "the value of `{{{{{placeholder}}}}}` is empty or contains one of * + / {{ }}"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

/// True when the pattern contains a placeholder.
pub fn is_templated(pattern: &str) -> bool {
    pattern.contains("{{")
}

/// Replaces every `{{...}}` in `pattern` with the identity's value.
///
/// Whitespace just inside the braces is ignored (`{{ identity.entity.id }}`).
pub fn resolve_template<'a>(
    pattern: &'a str,
    identity: &IdentityContext,
) -> Result<Cow<'a, str>, TemplateError> {
    if !is_templated(pattern) {
        return Ok(Cow::Borrowed(pattern));
    }
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some((before, after)) = rest.split_once("{{") {
        out.push_str(before);
        let (inside, after) = after.split_once("}}").ok_or(TemplateError::Unterminated)?;
        let placeholder = inside.trim();
        let value = lookup(placeholder, identity).ok_or_else(|| TemplateError::Unresolved {
            placeholder: placeholder.to_owned(),
        })?;
        if value.is_empty() || value.contains(['*', '+', '/', '{', '}']) {
            return Err(TemplateError::UnsafeValue {
                placeholder: placeholder.to_owned(),
            });
        }
        out.push_str(value);
        rest = after;
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// The value of one placeholder (without braces), if the identity has it.
fn lookup<'a>(placeholder: &str, identity: &'a IdentityContext) -> Option<&'a str> {
    if let Some(entity) = placeholder.strip_prefix("identity.entity.") {
        return lookup_entity(entity, identity);
    }
    if let Some(rest) = placeholder.strip_prefix("identity.groups.ids.") {
        let (id, field) = split_group_field(rest)?;
        let group = identity.groups.iter().find(|group| group.id == id)?;
        return match field {
            GroupField::Name => Some(&group.name),
            GroupField::Id => None,
            GroupField::Metadata(key) => group.metadata.get(key).map(String::as_str),
        };
    }
    if let Some(rest) = placeholder.strip_prefix("identity.groups.names.") {
        let (name, field) = split_group_field(rest)?;
        let group = identity.groups.iter().find(|group| group.name == name)?;
        return match field {
            GroupField::Id => Some(&group.id),
            GroupField::Name => None,
            GroupField::Metadata(key) => group.metadata.get(key).map(String::as_str),
        };
    }
    None
}

fn lookup_entity<'a>(field: &str, identity: &'a IdentityContext) -> Option<&'a str> {
    match field {
        "id" => return identity.entity_id.as_deref(),
        "name" => return identity.entity_name.as_deref(),
        _ => {}
    }
    // Without an entity there is nothing to resolve, even if metadata were set.
    identity.entity_id.as_ref()?;
    if let Some(key) = field.strip_prefix("metadata.") {
        return identity.entity_metadata.get(key).map(String::as_str);
    }
    let rest = field.strip_prefix("aliases.")?;
    let (accessor, alias_field) = rest.split_once('.')?;
    let alias = identity.aliases.get(accessor)?;
    match alias_field {
        "id" => Some(&alias.id),
        "name" => Some(&alias.name),
        _ => {
            if let Some(key) = alias_field.strip_prefix("metadata.") {
                alias.metadata.get(key).map(String::as_str)
            } else {
                let key = alias_field.strip_prefix("custom_metadata.")?;
                alias.custom_metadata.get(key).map(String::as_str)
            }
        }
    }
}

enum GroupField<'a> {
    Id,
    Name,
    Metadata(&'a str),
}

/// Splits `<group>.id`, `<group>.name` or `<group>.metadata.<key>`.
fn split_group_field(rest: &str) -> Option<(&str, GroupField<'_>)> {
    if let Some((group, key)) = rest.split_once(".metadata.") {
        return Some((group, GroupField::Metadata(key)));
    }
    if let Some(group) = rest.strip_suffix(".id") {
        return Some((group, GroupField::Id));
    }
    rest.strip_suffix(".name")
        .map(|group| (group, GroupField::Name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> IdentityContext {
        let mut aliases = BTreeMap::new();
        aliases.insert(
            "auth_userpass_1".to_owned(),
            AliasContext {
                id: "alias-1".to_owned(),
                name: "alice".to_owned(),
                metadata: BTreeMap::from([("team".to_owned(), "blue".to_owned())]),
                custom_metadata: BTreeMap::from([("cost".to_owned(), "c42".to_owned())]),
            },
        );
        IdentityContext {
            entity_id: Some("e-123".to_owned()),
            entity_name: Some("alice".to_owned()),
            entity_metadata: BTreeMap::from([
                ("project".to_owned(), "apollo".to_owned()),
                ("evil".to_owned(), "*".to_owned()),
            ]),
            aliases,
            groups: vec![GroupContext {
                id: "g-1".to_owned(),
                name: "ops.team".to_owned(),
                metadata: BTreeMap::from([("region".to_owned(), "eu".to_owned())]),
            }],
        }
    }

    #[test]
    fn resolves_every_placeholder_kind() {
        let identity = identity();
        let cases = [
            ("a/{{identity.entity.id}}/b", "a/e-123/b"),
            ("a/{{ identity.entity.name }}", "a/alice"),
            ("a/{{identity.entity.metadata.project}}", "a/apollo"),
            ("{{identity.entity.aliases.auth_userpass_1.id}}", "alias-1"),
            ("{{identity.entity.aliases.auth_userpass_1.name}}", "alice"),
            (
                "{{identity.entity.aliases.auth_userpass_1.metadata.team}}",
                "blue",
            ),
            (
                "{{identity.entity.aliases.auth_userpass_1.custom_metadata.cost}}",
                "c42",
            ),
            ("{{identity.groups.ids.g-1.name}}", "ops.team"),
            ("{{identity.groups.ids.g-1.metadata.region}}", "eu"),
            ("{{identity.groups.names.ops.team.id}}", "g-1"),
            ("{{identity.groups.names.ops.team.metadata.region}}", "eu"),
            (
                "x/{{identity.entity.id}}/{{identity.entity.name}}/*",
                "x/e-123/alice/*",
            ),
            ("plain/*", "plain/*"),
        ];
        for (pattern, expected) in cases {
            assert_eq!(
                resolve_template(pattern, &identity).as_deref(),
                Ok(expected),
                "{pattern}"
            );
        }
    }

    #[test]
    fn refuses_what_cannot_or_must_not_be_resolved() {
        let identity = identity();
        for pattern in [
            "a/{{identity.entity.metadata.missing}}",
            "a/{{identity.entity.aliases.other.id}}",
            "a/{{identity.groups.ids.g-2.name}}",
            "a/{{identity.groups.names.ops.team.name}}",
            "a/{{identity.entity.group_names}}",
            "a/{{identity.entity.metadata.evil}}",
            "a/{{identity.entity.id",
            "a/{{}}",
        ] {
            assert!(
                resolve_template(pattern, &identity).is_err(),
                "{pattern} must not resolve"
            );
        }
        let anonymous = IdentityContext::default();
        assert!(resolve_template("a/{{identity.entity.id}}", &anonymous).is_err());
    }
}
