//! The policy gate: which turns may be processed at all, and which interests may be used for ads.
//!
//! Two steps, both in the engine so that library users get them too:
//!
//! 1. **Admit, before inference** ([`Policy::admit`]). A turn that may not be processed is never
//!    tokenized or scored; it gets a row with null scores and the first rule it fails, in this
//!    order: `region:<code>` (the turn's region is excluded; `region:unknown` when it has none),
//!    `minor`, `no_consent`, `not_linked`, `role`. A missing field gets the strictest reading: no
//!    region is treated as excluded, no `is_minor` as a minor, no `consent_ads` as no consent, no
//!    `account_linked` as not linked, no `role` as a role that may not be targeted.
//! 2. **Gate, after inference** (`output::decide`). A trained sensitive label at or above its
//!    threshold vetoes ad use (`sensitive:<label>`, the highest-scoring hit). Topics configured as
//!    proxies for sensitive categories are never emitted: not in `interests`, and their scores are
//!    null. Sensitive scores are kept for audit and never listed among interests.
//!
//! The configuration is versioned JSON (`turnscore policy` prints the built-in default); its
//! SHA-256 identifies it in manifests.

use crate::error::{Error, Result};
use crate::input::{Role, Turn};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// EU member states, EEA members (IS, LI, NO), the UK and South Korea, as ISO 3166-1 alpha-2
/// codes; the parts of the EU that have codes of their own (the outermost regions GP, GF, MQ,
/// RE, YT and MF; Åland AX; the Canary Islands IC and Ceuta and Melilla EA, both exceptionally
/// reserved codes); and the aliases `EU` (the Union itself), `UK` (for GB), `EL` (the EU's code
/// for Greece) and `XI` (Northern Ireland). The Azores and Madeira have no code of their own:
/// they are `PT`.
pub const DEFAULT_EXCLUDED_REGIONS: [&str; 45] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", // EU 27
    "GP", "GF", "MQ", "RE", "YT", "MF", // EU outermost regions with ISO codes
    "AX", // Åland (Finland)
    "IC", "EA", // Canary Islands; Ceuta and Melilla (Spain), exceptionally reserved codes
    "EU", // the Union as a region value
    "IS", "LI", "NO", // EEA
    "GB", "UK", // United Kingdom
    "KR", // South Korea
    "EL", // Greece, EU spelling
    "XI", // Northern Ireland (EU/UK protocol code)
];

/// The policy configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Identifies this configuration in outputs and manifests.
    pub version: String,
    /// Regions (ISO 3166-1 alpha-2, case-insensitive) whose turns are never processed.
    pub excluded_regions: Vec<String>,
    /// Only turns with `consent_ads: true` are processed.
    pub require_consent: bool,
    /// Turns with `is_minor: true` (or no `is_minor`) are never processed.
    pub exclude_minors: bool,
    /// Only turns with `account_linked: true` are processed.
    pub require_account_linked: bool,
    /// Roles whose turns may be used for targeting (default: only `user`).
    pub ad_roles: Vec<Role>,
    /// Topic label → the sensitive labels it stands proxy for. Such topics are never emitted.
    #[serde(default)]
    pub topic_proxies: BTreeMap<String, Vec<String>>,
    /// A model with no trained sensitive label makes no turn ad-eligible (`no_sensitive_head`)
    /// unless this is `false`: only a policy that says so explicitly lets such a model target.
    /// Written out only when `false`, so that the hash of a policy that leaves it at its
    /// default is the hash it had before the field existed.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub require_sensitive_head: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            version: "turnscore-default-2026-12".into(),
            excluded_regions: DEFAULT_EXCLUDED_REGIONS.iter().map(|s| s.to_string()).collect(),
            require_consent: true,
            exclude_minors: true,
            require_account_linked: true,
            ad_roles: vec![Role::User],
            topic_proxies: BTreeMap::new(),
            require_sensitive_head: true,
        }
    }
}

/// Why a turn is not admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Suppression {
    /// The turn's region is excluded (`None`: the turn has no region).
    Region(Option<String>),
    /// The subject is a minor, or `is_minor` is missing.
    Minor,
    /// No consent, or `consent_ads` is missing.
    NoConsent,
    /// The account is not linked, or `account_linked` is missing.
    NotLinked,
    /// The turn's role may not be targeted, or `role` is missing.
    Role,
}

impl Suppression {
    /// The output `reason`.
    pub fn reason(&self) -> String {
        match self {
            Suppression::Region(Some(r)) => format!("region:{r}"),
            Suppression::Region(None) => "region:unknown".into(),
            Suppression::Minor => "minor".into(),
            Suppression::NoConsent => "no_consent".into(),
            Suppression::NotLinked => "not_linked".into(),
            Suppression::Role => "role".into(),
        }
    }
}

/// Policy-relevant fields a turn lacked (so the strictest reading applied), for the job summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Missing {
    /// Turns without `region`.
    pub region: u64,
    /// Turns without `is_minor`.
    pub is_minor: u64,
    /// Turns without `consent_ads`.
    pub consent_ads: u64,
    /// Turns without `account_linked`.
    pub account_linked: u64,
    /// Turns without `role`.
    pub role: u64,
}

impl Missing {
    /// Adds the fields `t` lacks (only those the policy reads).
    pub fn count(&mut self, p: &Policy, t: &Turn) {
        self.region += u64::from(!p.excluded_regions.is_empty() && t.region.is_none());
        self.is_minor += u64::from(p.exclude_minors && t.is_minor.is_none());
        self.consent_ads += u64::from(p.require_consent && t.consent_ads.is_none());
        self.account_linked += u64::from(p.require_account_linked && t.account_linked.is_none());
        self.role += u64::from(t.role.is_none());
    }

    /// Adds another tally.
    pub fn add(&mut self, o: &Missing) {
        self.region += o.region;
        self.is_minor += o.is_minor;
        self.consent_ads += o.consent_ads;
        self.account_linked += o.account_linked;
        self.role += o.role;
    }

    /// `(field, rows)` for each field that was missing somewhere.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        [
            ("region", self.region),
            ("is_minor", self.is_minor),
            ("consent_ads", self.consent_ads),
            ("account_linked", self.account_linked),
            ("role", self.role),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

impl Policy {
    /// Parses a policy from JSON, rejecting unknown fields.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the problem (and its line and column).
    pub fn from_json(bytes: &[u8]) -> Result<Policy> {
        let p: Policy =
            serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("policy: {e}")))?;
        if p.version.trim().is_empty() {
            return Err(Error::Invalid("policy: \"version\" is empty".into()));
        }
        for r in &p.excluded_regions {
            if r.len() != 2 || !r.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(Error::Invalid(format!(
                    "policy: excluded region {r:?} is not a two-letter ISO 3166-1 code"
                )));
            }
        }
        Ok(p)
    }

    /// The policy as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a policy serialises")
    }

    /// SHA-256 of the compact JSON form, hex.
    pub fn sha256(&self) -> String {
        crate::format::hex_sha256(serde_json::to_string(self).expect("serialises").as_bytes())
    }

    /// Checks the proxy map against a model's labels.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming a label the model does not have.
    pub fn check_labels(&self, topics: &[&str], sensitive: &[&str]) -> Result<()> {
        for (t, ss) in &self.topic_proxies {
            if !topics.contains(&t.as_str()) {
                return Err(Error::Invalid(format!(
                    "policy: topic_proxies names topic {t:?}, which the model does not have"
                )));
            }
            if let Some(s) = ss.iter().find(|s| !sensitive.contains(&s.as_str())) {
                return Err(Error::Invalid(format!(
                    "policy: topic_proxies maps {t:?} to {s:?}, which is not a sensitive label of the model"
                )));
            }
        }
        Ok(())
    }

    /// Decides whether a turn may be processed at all. `None`: admit.
    ///
    /// ```
    /// use turnscore::input::{Role, Turn};
    /// use turnscore::policy::{Policy, Suppression};
    /// let p = Policy::default();
    /// let mut t = Turn { id: "1".into(), text: "hi".into(), ..Default::default() };
    /// assert_eq!(p.admit(&t), Some(Suppression::Region(None))); // no region: strictest reading
    /// t.region = Some("US".into());
    /// t.is_minor = Some(false);
    /// t.consent_ads = Some(true);
    /// t.account_linked = Some(true);
    /// t.role = Some(Role::User);
    /// assert_eq!(p.admit(&t), None);
    /// t.region = Some("KR".into());
    /// assert_eq!(p.admit(&t).unwrap().reason(), "region:KR");
    /// ```
    pub fn admit(&self, t: &Turn) -> Option<Suppression> {
        if !self.excluded_regions.is_empty() {
            match &t.region {
                None => return Some(Suppression::Region(None)),
                Some(r) if self.excluded_regions.iter().any(|x| x.eq_ignore_ascii_case(r)) => {
                    return Some(Suppression::Region(Some(r.to_ascii_uppercase())))
                }
                Some(_) => {}
            }
        }
        if self.exclude_minors && t.is_minor != Some(false) {
            return Some(Suppression::Minor);
        }
        if self.require_consent && t.consent_ads != Some(true) {
            return Some(Suppression::NoConsent);
        }
        if self.require_account_linked && t.account_linked != Some(true) {
            return Some(Suppression::NotLinked);
        }
        match t.role {
            Some(r) if self.ad_roles.contains(&r) => None,
            _ => Some(Suppression::Role),
        }
    }

    /// Whether topic `label` is a proxy for a sensitive category (never emitted).
    pub fn is_proxy(&self, label: &str) -> bool {
        self.topic_proxies.contains_key(label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(
        region: Option<&str>,
        is_minor: Option<bool>,
        consent: Option<bool>,
        linked: Option<bool>,
        role: Option<Role>,
    ) -> Turn {
        Turn {
            id: "x".into(),
            text: "t".into(),
            region: region.map(str::to_string),
            is_minor,
            consent_ads: consent,
            account_linked: linked,
            role,
            ..Default::default()
        }
    }

    /// The decision table, written as rules in their documented order: each rule is a predicate
    /// on one field and the reason it gives. Every combination of missing / bad / good values for
    /// the five fields (3^5 = 243 turns) is checked against it.
    #[test]
    fn admit_decision_table_covers_every_combination() {
        let p = Policy::default();
        let regions = [None, Some("de"), Some("US")];
        let bools = [None, Some(false), Some(true)];
        let roles = [None, Some(Role::Assistant), Some(Role::User)];
        let mut admitted = 0;
        for region in regions {
            for minor in bools {
                for consent in bools {
                    for linked in bools {
                        for role in roles {
                            let t = turn(region, minor, consent, linked, role);
                            let rules: [(bool, &str); 5] = [
                                (
                                    region != Some("US"),
                                    if region.is_none() { "region:unknown" } else { "region:DE" },
                                ),
                                (minor != Some(false), "minor"),
                                (consent != Some(true), "no_consent"),
                                (linked != Some(true), "not_linked"),
                                (role != Some(Role::User), "role"),
                            ];
                            let want =
                                rules.iter().find(|(fails, _)| *fails).map(|(_, r)| r.to_string());
                            let got = p.admit(&t).map(|s| s.reason());
                            assert_eq!(got, want, "{t:?}");
                            admitted += usize::from(got.is_none());
                        }
                    }
                }
            }
        }
        assert_eq!(admitted, 1, "only the turn with every field good is admitted");
    }

    #[test]
    fn relaxed_policy_admits_what_it_no_longer_requires() {
        let p = Policy {
            excluded_regions: vec![],
            require_consent: false,
            exclude_minors: false,
            require_account_linked: false,
            ad_roles: vec![Role::User, Role::Assistant],
            ..Policy::default()
        };
        assert_eq!(p.admit(&turn(None, None, None, None, Some(Role::Assistant))), None);
        assert_eq!(
            p.admit(&turn(None, Some(true), Some(false), Some(false), Some(Role::User))),
            None
        );
        // Role is still read: a turn without one is not targeted.
        assert_eq!(p.admit(&turn(None, None, None, None, None)), Some(Suppression::Role));
    }

    #[test]
    fn every_default_region_is_excluded_case_insensitively() {
        let p = Policy::default();
        for r in [
            "de", "FR", "gb", "UK", "kr", "NO", "is", "li", "ie", // members, EEA, UK, Korea
            "RE", "gp", "MQ", "GF", "YT", "MF", "AX", "IC", "EA", "eu", "EL",
            "XI", // parts, aliases
        ] {
            let got =
                p.admit(&turn(Some(r), Some(false), Some(true), Some(true), Some(Role::User)));
            assert_eq!(got, Some(Suppression::Region(Some(r.to_ascii_uppercase()))), "{r}");
        }
        for r in ["US", "BR", "JP", "CH", "IN", "PM", "NC", "GL"] {
            assert_eq!(
                p.admit(&turn(Some(r), Some(false), Some(true), Some(true), Some(Role::User))),
                None,
                "{r}"
            );
        }
    }

    #[test]
    fn policy_json_round_trips_and_rejects_mistakes() {
        let p = Policy::default();
        assert_eq!(Policy::from_json(p.to_json().as_bytes()).unwrap(), p);
        assert_eq!(p.sha256(), Policy::from_json(p.to_json().as_bytes()).unwrap().sha256());
        let typo = p.to_json().replace("require_consent", "require_consnet");
        assert!(Policy::from_json(typo.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("require_consnet"));
        let bad = p.to_json().replace("\"KR\"", "\"Korea\"");
        assert!(Policy::from_json(bad.as_bytes()).unwrap_err().to_string().contains("Korea"));
        let mut q = p.clone();
        q.topic_proxies.insert("fitness_healthy_living".into(), vec!["health".into()]);
        assert!(q.check_labels(&["fitness_healthy_living"], &["health"]).is_ok());
        assert!(q.check_labels(&["travel"], &["health"]).is_err());
        assert!(q.check_labels(&["fitness_healthy_living"], &["religion"]).is_err());
    }
}
