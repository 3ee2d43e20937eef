//! The `token_*` fields every auth role and user carries, as in Vault's `tokenutil`:
//! parsing them from a write (with the legacy `policies`), returning them on a read, checking
//! `token_bound_cidrs` at login, and turning them into the [`AuthSpec`] the core mints a
//! token from. TTL arithmetic against the mount and system limits is the core's.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ward_core::engine::{fields, AuthSpec};
use ward_core::Error;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenFields {
    pub token_ttl: u64,
    pub token_max_ttl: u64,
    pub token_policies: Vec<String>,
    pub token_period: u64,
    pub token_num_uses: u64,
    /// `default`, `service` or `batch`.
    pub token_type: String,
    pub token_bound_cidrs: Vec<String>,
    pub token_no_default_policy: bool,
    pub token_explicit_max_ttl: u64,
}

impl Default for TokenFields {
    fn default() -> Self {
        TokenFields {
            token_ttl: 0,
            token_max_ttl: 0,
            token_policies: Vec::new(),
            token_period: 0,
            token_num_uses: 0,
            token_type: "default".into(),
            token_bound_cidrs: Vec::new(),
            token_no_default_policy: false,
            token_explicit_max_ttl: 0,
        }
    }
}

impl TokenFields {
    /// Applies the token fields present in `data` (a create or update). `policies` is the
    /// legacy name of `token_policies`, used only when the latter is absent.
    pub fn update(&mut self, data: &Map<String, Value>) -> Result<(), Error> {
        if let Some(v) = fields::duration(data, "token_ttl")? {
            self.token_ttl = v;
        }
        if let Some(v) = fields::duration(data, "token_max_ttl")? {
            self.token_max_ttl = v;
        }
        if let Some(v) = fields::duration(data, "token_period")? {
            self.token_period = v;
        }
        if let Some(v) = fields::duration(data, "token_explicit_max_ttl")? {
            self.token_explicit_max_ttl = v;
        }
        if let Some(v) = fields::integer(data, "token_num_uses")? {
            self.token_num_uses = u64::try_from(v)
                .map_err(|_| Error::invalid("'token_num_uses' cannot be negative"))?;
        }
        if let Some(v) = fields::boolean(data, "token_no_default_policy")? {
            self.token_no_default_policy = v;
        }
        if let Some(v) = fields::string(data, "token_type")? {
            let v = if v.is_empty() {
                "default".to_string()
            } else {
                v
            };
            if !matches!(v.as_str(), "default" | "service" | "batch") {
                return Err(Error::invalid(format!("invalid 'token_type' value {v:?}")));
            }
            self.token_type = v;
        }
        let policies = match fields::strings(data, "token_policies")? {
            Some(p) => Some(p),
            None => fields::strings(data, "policies")?,
        };
        if let Some(policies) = policies {
            self.token_policies = normalize_policies(policies);
        }
        if let Some(cidrs) = fields::strings(data, "token_bound_cidrs")? {
            self.token_bound_cidrs = parse_cidrs(cidrs)?;
        }
        if self.token_max_ttl > 0 && self.token_ttl > self.token_max_ttl {
            return Err(Error::invalid(
                "'token_ttl' cannot be greater than 'token_max_ttl'",
            ));
        }
        if self.token_type == "batch" && self.token_period > 0 {
            return Err(Error::invalid(
                "'token_type' cannot be 'batch' when 'token_period' is set",
            ));
        }
        Ok(())
    }

    /// The fields as a read shows them, plus the legacy `policies`.
    pub fn write_to(&self, data: &mut Map<String, Value>) {
        data.insert("token_ttl".into(), Value::from(self.token_ttl));
        data.insert("token_max_ttl".into(), Value::from(self.token_max_ttl));
        data.insert(
            "token_policies".into(),
            Value::from(self.token_policies.clone()),
        );
        data.insert("policies".into(), Value::from(self.token_policies.clone()));
        data.insert("token_period".into(), Value::from(self.token_period));
        data.insert("token_num_uses".into(), Value::from(self.token_num_uses));
        data.insert("token_type".into(), Value::from(self.token_type.clone()));
        data.insert(
            "token_bound_cidrs".into(),
            Value::from(self.token_bound_cidrs.clone()),
        );
        data.insert(
            "token_no_default_policy".into(),
            Value::from(self.token_no_default_policy),
        );
        data.insert(
            "token_explicit_max_ttl".into(),
            Value::from(self.token_explicit_max_ttl),
        );
    }

    /// `token_bound_cidrs` at login: a request from outside them is denied, and so is one
    /// whose address is unknown (bindings fail closed), with Vault's 403.
    pub fn check_login_address(&self, remote_address: Option<&str>) -> Result<(), Error> {
        if self.token_bound_cidrs.is_empty()
            || ward_core::cidr::allowed(&self.token_bound_cidrs, remote_address)
        {
            Ok(())
        } else {
            Err(Error::denied())
        }
    }

    /// The token part of a login's answer; the method adds the alias and metadata.
    pub fn auth_spec(&self) -> AuthSpec {
        AuthSpec {
            policies: self.token_policies.clone(),
            ttl: self.token_ttl,
            max_ttl: self.token_max_ttl,
            explicit_max_ttl: self.token_explicit_max_ttl,
            period: self.token_period,
            num_uses: self.token_num_uses,
            renewable: true,
            no_default_policy: self.token_no_default_policy,
            token_type: if self.token_type == "default" {
                String::new()
            } else {
                self.token_type.clone()
            },
            bound_cidrs: self.token_bound_cidrs.clone(),
            ..AuthSpec::default()
        }
    }
}

/// Vault's policy list normalisation: trimmed, lower-cased, without empties, sorted, unique.
pub fn normalize_policies(policies: Vec<String>) -> Vec<String> {
    let mut policies: Vec<String> = policies
        .into_iter()
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    policies.sort();
    policies.dedup();
    policies
}

/// Validates a list of CIDR blocks (or bare addresses).
pub fn parse_cidrs(cidrs: Vec<String>) -> Result<Vec<String>, Error> {
    for cidr in &cidrs {
        if ward_core::cidr::parse(cidr).is_none() {
            return Err(Error::invalid(format!("invalid CIDR block {cidr:?}")));
        }
    }
    Ok(cidrs)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::object;

    #[test]
    fn update_read_and_auth_spec_round_trip() {
        let mut token = TokenFields::default();
        token
            .update(&object(json!({
                "token_ttl": "1h", "token_max_ttl": 7200, "token_policies": "B, a,a",
                "token_period": "0", "token_num_uses": 3, "token_type": "service",
                "token_bound_cidrs": ["10.0.0.0/8"], "token_no_default_policy": true,
                "token_explicit_max_ttl": "3h",
            })))
            .expect("update");
        assert_eq!(token.token_policies, ["a", "b"]);
        let mut read = Map::new();
        token.write_to(&mut read);
        assert_eq!(read["token_ttl"], json!(3600));
        assert_eq!(read["policies"], json!(["a", "b"]));
        assert_eq!(read["token_explicit_max_ttl"], json!(10800));
        let spec = token.auth_spec();
        assert_eq!((spec.ttl, spec.max_ttl, spec.num_uses), (3600, 7200, 3));
        assert!(spec.no_default_policy && spec.renewable);
        assert_eq!(spec.token_type, "service");
        assert!(token.check_login_address(Some("10.1.1.1")).is_ok());
        assert_eq!(
            token.check_login_address(Some("192.168.0.1")),
            Err(Error::denied())
        );
        assert_eq!(token.check_login_address(None), Err(Error::denied()));
    }

    #[test]
    fn legacy_policies_and_bad_values() {
        let mut token = TokenFields::default();
        token
            .update(&object(json!({"policies": ["dev"]})))
            .expect("legacy");
        assert_eq!(token.token_policies, ["dev"]);
        token
            .update(&object(json!({"policies": ["x"], "token_policies": ["y"]})))
            .expect("both");
        assert_eq!(token.token_policies, ["y"], "token_policies wins");
        for bad in [
            json!({"token_type": "weird"}),
            json!({"token_bound_cidrs": ["10.0.0.0/40"]}),
            json!({"token_num_uses": -1}),
            json!({"token_ttl": 100, "token_max_ttl": 10}),
        ] {
            assert!(
                matches!(
                    TokenFields::default().update(&object(bad.clone())),
                    Err(Error::InvalidRequest(_))
                ),
                "{bad}"
            );
        }
    }
}
