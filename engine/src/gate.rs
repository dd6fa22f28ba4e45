//! The gate after inference, and the vocabulary of every row's `reason`.
//!
//! [`Reason`] is the one place an output reason is named: its [`std::fmt::Display`] is what the
//! `reason` column holds. [`decide`] turns one scored turn into its decision, failing closed:
//!
//! 1. a score that is NaN or infinite (`score_not_finite:<label>`, the first such label): the
//!    model cannot be trusted for this turn;
//! 2. a model with no trained sensitive label, unless the policy says `require_sensitive_head:
//!    false` (`no_sensitive_head`): nothing could veto the turn;
//! 3. a trained sensitive label at or above its threshold (`sensitive:<label>`, the
//!    highest-scoring hit);
//! 4. otherwise `ok`: ad-eligible, with the trained topics at or above their thresholds as
//!    interests, less the policy's proxy topics.

use crate::format::LabelMeta;
use crate::input::RejectReason;
use crate::output::TurnScores;
use crate::policy::{Policy, Suppression};
use std::fmt;

/// Why a row is or is not ad-eligible. Only [`Reason::Ok`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Scored, nothing sensitive: ad-eligible.
    Ok,
    /// Scored, and this sensitive label (the highest-scoring hit) vetoes ad use.
    Sensitive(String),
    /// Scored, but this label's score is NaN or infinite.
    ScoreNotFinite(String),
    /// Scored by a model with no trained sensitive label.
    NoSensitiveHead,
    /// Not admitted by the policy before inference (never tokenized).
    Suppressed(Suppression),
    /// The row itself is bad.
    Rejected(RejectReason),
}

impl Reason {
    /// Whether the row may be used for ads.
    pub fn ad_eligible(&self) -> bool {
        matches!(self, Reason::Ok)
    }

    /// The outcome class, for tallies: `ok`, `sensitive` (every scored turn the gate vetoed,
    /// including the fail-closed reasons), `suppressed` or `rejected`.
    pub fn class(&self) -> Class {
        match self {
            Reason::Ok => Class::Ok,
            Reason::Sensitive(_) | Reason::ScoreNotFinite(_) | Reason::NoSensitiveHead => {
                Class::Vetoed
            }
            Reason::Suppressed(_) => Class::Suppressed,
            Reason::Rejected(_) => Class::Rejected,
        }
    }
}

/// What became of a row, in four classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Ad-eligible.
    Ok,
    /// Scored and vetoed by the gate after inference.
    Vetoed,
    /// Not admitted by the policy before inference.
    Suppressed,
    /// A bad row.
    Rejected,
}

impl Class {
    /// The class of a reason string as written in the `reason` column.
    pub fn of_reason(s: &str) -> Class {
        if s == "ok" {
            Class::Ok
        } else if s.starts_with("rejected:") {
            Class::Rejected
        } else if s.starts_with("sensitive:")
            || s.starts_with("score_not_finite:")
            || s == "no_sensitive_head"
        {
            Class::Vetoed
        } else {
            Class::Suppressed
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Ok => f.write_str("ok"),
            Reason::Sensitive(l) => write!(f, "sensitive:{l}"),
            Reason::ScoreNotFinite(l) => write!(f, "score_not_finite:{l}"),
            Reason::NoSensitiveHead => f.write_str("no_sensitive_head"),
            Reason::Suppressed(s) => f.write_str(&s.reason()),
            Reason::Rejected(r) => write!(f, "rejected:{}", r.code()),
        }
    }
}

/// Labels of `scores` that are on: trained and at or above their threshold.
pub fn hits<'a>(labels: &'a [LabelMeta], scores: &[f32]) -> Vec<&'a str> {
    labels
        .iter()
        .zip(scores)
        .filter(|(l, &s)| l.trained && s >= l.threshold)
        .map(|(l, _)| l.name.as_str())
        .collect()
}

/// The gate's decision for one scored turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Why (ad-eligible only when [`Reason::Ok`]).
    pub reason: Reason,
    /// Trained sensitive labels at or above their thresholds.
    pub sensitive_hits: Vec<&'a str>,
    /// Interests to emit (empty unless ad-eligible).
    pub interests: Vec<&'a str>,
}

/// Decides one scored turn (see the module doc for the order of the rules).
pub fn decide<'a>(
    topics: &'a [LabelMeta],
    sensitive: &'a [LabelMeta],
    policy: &Policy,
    s: &TurnScores,
) -> Decision<'a> {
    let shits = hits(sensitive, &s.sensitive);
    let not_finite = topics
        .iter()
        .zip(&s.topics)
        .chain(sensitive.iter().zip(&s.sensitive))
        .find(|(_, v)| !v.is_finite());
    let veto = |reason| Decision { reason, sensitive_hits: shits.clone(), interests: Vec::new() };
    if let Some((l, _)) = not_finite {
        return veto(Reason::ScoreNotFinite(l.name.clone()));
    }
    if policy.require_sensitive_head && !sensitive.iter().any(|l| l.trained) {
        return veto(Reason::NoSensitiveHead);
    }
    if !shits.is_empty() {
        // The highest-scoring sensitive hit names the reason.
        let top = sensitive
            .iter()
            .zip(&s.sensitive)
            .filter(|(l, _)| shits.contains(&l.name.as_str()))
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(l, _)| l.name.clone())
            .unwrap_or_default();
        return veto(Reason::Sensitive(top));
    }
    let mut interests = hits(topics, &s.topics);
    interests.retain(|l| !policy.is_proxy(l));
    Decision { reason: Reason::Ok, sensitive_hits: shits, interests }
}
