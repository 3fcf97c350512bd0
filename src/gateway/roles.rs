//! `[roles]`: named groups of people, for the tool policy (`roles = ["finance"]` under a
//! tool's `[policy]`).
//!
//! A member is an identity as the gateway knows it, always with its platform:
//! `slack:T0123:U0456` (team and user), `telegram:42`, `discord:1234`, `cli:alice`, or `api:key:0123456789ab` for an
//! API key. A bare id is refused when the config is loaded: the same number can be a
//! Telegram user and a Discord user, and an API caller must never get a chat user's roles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{AttributeValue, Channel};

/// `[roles]`: role name → its members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RolesConfig(pub BTreeMap<String, Vec<String>>);

impl RolesConfig {
    /// Adds every problem to `problems`: role names that are not simple words, and members
    /// without a platform.
    pub fn validate(&self, problems: &mut Vec<String>) {
        for (role, members) in &self.0 {
            if role.is_empty()
                || !role
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                problems.push(format!(
                    "roles.{role}: a role name is letters, digits, `_` and `-` (e.g. `finance`)"
                ));
            }
            for member in members {
                let ok = member
                    .split_once(':')
                    .is_some_and(|(platform, id)| !platform.is_empty() && !id.is_empty());
                if !ok {
                    problems.push(format!(
                        "roles.{role}: `{member}` has no platform; write members as PLATFORM:ID, e.g. `slack:U0123`, `telegram:42`, `api:key:0123456789ab`"
                    ));
                }
            }
        }
    }

    /// The roles of `user_id` on `channel`, in name order.
    pub fn of(&self, channel: Channel, user_id: &str) -> Vec<String> {
        let who = format!("{channel}:{user_id}");
        self.0
            .iter()
            .filter(|(_, members)| members.contains(&who))
            .map(|(role, _)| role.clone())
            .collect()
    }
}

/// `[attributes."PLATFORM:ID"]`: facts about a person that the semantic model's access rules
/// read (`rows = { "customers.region" = "{{ user.region }}" }`), e.g.
/// `[attributes."slack:T0123:U0456"] region = "EMEA"`. Members are written as in `[roles]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttributesConfig(pub BTreeMap<String, BTreeMap<String, AttributeValue>>);

impl AttributesConfig {
    /// Adds every problem to `problems`: people without a platform, attribute names that are
    /// not simple words.
    pub fn validate(&self, problems: &mut Vec<String>) {
        for (who, attributes) in &self.0 {
            if !who
                .split_once(':')
                .is_some_and(|(platform, id)| !platform.is_empty() && !id.is_empty())
            {
                problems.push(format!(
                    "attributes.\"{who}\": write a person as PLATFORM:ID, e.g. [attributes.\"slack:T0123:U0456\"] or [attributes.\"telegram:42\"]"
                ));
            }
            for name in attributes.keys() {
                let word = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !word {
                    problems.push(format!(
                        "attributes.\"{who}\".{name}: an attribute name is letters, digits and `_`, starting with a letter (e.g. `region`)"
                    ));
                }
            }
        }
    }

    /// The attributes of `user_id` on `channel`.
    pub fn of(&self, channel: Channel, user_id: &str) -> crate::model::Attributes {
        self.0
            .get(&format!("{channel}:{user_id}"))
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.to_vec())).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn roles(entries: &[(&str, &[&str])]) -> RolesConfig {
        RolesConfig(
            entries
                .iter()
                .map(|(r, m)| (r.to_string(), m.iter().map(|s| s.to_string()).collect()))
                .collect(),
        )
    }

    #[test]
    fn members_match_with_their_platform_only() {
        let r = roles(&[
            ("finance", &["slack:U1", "api:key:abc"]),
            ("ops", &["slack:U1", "telegram:42"]),
        ]);
        assert_eq!(r.of(Channel::new("slack"), "U1"), vec!["finance", "ops"]);
        assert_eq!(r.of(Channel::new("telegram"), "42"), vec!["ops"]);
        assert_eq!(r.of(Channel::API, "key:abc"), vec!["finance"]);
        // The same id on another platform, or typed into the API, gets nothing.
        assert!(r.of(Channel::API, "U1").is_empty());
        assert!(r.of(Channel::new("discord"), "42").is_empty());
    }

    #[test]
    fn attributes_are_per_person_with_their_platform() {
        let a: AttributesConfig = toml::from_str(
            r#"
            "slack:T1:U1" = { region = "EMEA", regions = ["EMEA", "APAC"] }
            "U2" = { "bad name" = "x" }
            "#,
        )
        .unwrap();
        let ana = a.of(Channel::new("slack"), "T1:U1");
        assert_eq!(ana["region"], vec!["EMEA"]);
        assert_eq!(ana["regions"], vec!["EMEA", "APAC"]);
        assert!(a.of(Channel::new("telegram"), "T1:U1").is_empty());
        let mut problems = Vec::new();
        a.validate(&mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn bare_ids_and_odd_names_are_refused() {
        let mut problems = Vec::new();
        roles(&[("finance", &["U1", "slack:"]), ("a b", &[])]).validate(&mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("`U1` has no platform")));
        assert!(problems.iter().any(|p| p.contains("roles.a b")));
    }
}
