//! The output: one Arrow `RecordBatch` row per input row, in input order.
//!
//! The schema is defined once, in [`schema`]; see DESIGN.md for the meaning of each column.
//! Each row is scored, suppressed by the policy before inference, or rejected ([`Outcome`]).
//! A scored turn is ad-eligible unless a trained sensitive label reaches its threshold, in which
//! case `reason` is `sensitive:<label>` for the highest-scoring such label, `topics` is null and
//! `interests` is empty (see [`crate::policy`] for the whole gate).

use crate::format::LabelMeta;
use crate::input::Row;
use crate::policy::{Policy, Suppression};
use arrow_array::builder::{
    BooleanBuilder, ListBuilder, StringBuilder, StringDictionaryBuilder, UInt32Builder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, Float32Array, RecordBatch, StructArray};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use std::sync::Arc;

/// Scores of one scored turn.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnScores {
    /// One score per topic label, in label order.
    pub topics: Vec<f32>,
    /// One score per sensitive label, in label order.
    pub sensitive: Vec<f32>,
    /// Tokens of the turn, special tokens included (all are scored, in windows if needed).
    pub tokens: u32,
    /// Windows the turn was scored in.
    pub windows: u32,
}

/// What became of one input row.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Scored by the model (and then gated).
    Scored(TurnScores),
    /// Not processed: the policy does not admit it. Never tokenized.
    Suppressed(Suppression),
    /// The row itself is bad (the reason is in the row).
    Rejected,
}

fn struct_fields(labels: &[LabelMeta]) -> Fields {
    labels.iter().map(|l| Field::new(&l.name, DataType::Float32, true)).collect()
}

/// The output schema for a model's label vocabularies. A model without a head (no labels in a
/// vocabulary) has no `topics` or `sensitive` column: an empty struct carries no data, and
/// Parquet cannot store one.
pub fn schema(topics: &[LabelMeta], sensitive: &[LabelMeta]) -> SchemaRef {
    let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let mut fields = vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("conversation_id", DataType::Utf8, true),
    ];
    if !topics.is_empty() {
        fields.push(Field::new("topics", DataType::Struct(struct_fields(topics)), true));
    }
    if !sensitive.is_empty() {
        fields.push(Field::new("sensitive", DataType::Struct(struct_fields(sensitive)), true));
    }
    fields.extend([
        Field::new("interests", list.clone(), false),
        Field::new("sensitive_hits", list, false),
        Field::new("ad_eligible", DataType::Boolean, false),
        Field::new(
            "reason",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        ),
        Field::new("tokens", DataType::UInt32, true),
        Field::new("windows", DataType::UInt32, true),
    ]);
    Arc::new(Schema::new(fields))
}

pub use crate::gate::{decide, hits};

/// A struct column of scores; `hidden[l]` nulls label `l` in every row (proxy topics).
fn score_struct(
    labels: &[LabelMeta],
    cols: Vec<Vec<f32>>,
    valid: &[bool],
    hidden: &[bool],
) -> ArrayRef {
    let nulls = NullBuffer::from(valid.to_vec());
    let arrays: Vec<ArrayRef> = cols
        .into_iter()
        .zip(hidden)
        .map(|(c, &h)| {
            let n = if h { NullBuffer::new_null(c.len()) } else { nulls.clone() };
            Arc::new(Float32Array::new(c.into(), Some(n))) as ArrayRef
        })
        .collect();
    Arc::new(StructArray::new(struct_fields(labels), arrays, Some(nulls)))
}

/// Builds the output batch for `rows`: `outcomes[i]` says what became of `rows[i]`.
///
/// # Errors
/// [`crate::Error::Arrow`] if Arrow rejects the arrays (a bug), or [`crate::Error::Invalid`] if
/// `outcomes` does not match `rows`.
pub fn build_batch(
    topics: &[LabelMeta],
    sensitive: &[LabelMeta],
    policy: &Policy,
    rows: &[Row],
    scores: &[Outcome],
) -> crate::Result<RecordBatch> {
    if rows.len() != scores.len() {
        return Err(crate::Error::Invalid("rows and scores differ in length".into()));
    }
    let n = rows.len();
    let mut id = StringBuilder::new();
    let mut user = StringBuilder::new();
    let mut conv = StringBuilder::new();
    let mut interests = ListBuilder::new(StringBuilder::new());
    let mut shits = ListBuilder::new(StringBuilder::new());
    let mut elig = BooleanBuilder::with_capacity(n);
    let mut reason = StringDictionaryBuilder::<Int32Type>::new();
    let mut tokens = UInt32Builder::with_capacity(n);
    let mut windows = UInt32Builder::with_capacity(n);
    let mut tcols = vec![vec![0f32; n]; topics.len()];
    let mut scols = vec![vec![0f32; n]; sensitive.len()];
    let mut tvalid = vec![false; n];
    let proxy: Vec<bool> = topics.iter().map(|l| policy.is_proxy(&l.name)).collect();
    let mut svalid = vec![false; n];
    for (i, (row, sc)) in rows.iter().zip(scores).enumerate() {
        id.append_option(row.id());
        match (&row.turn, sc) {
            (Ok(turn), Outcome::Scored(s)) => {
                if s.topics.len() != topics.len() || s.sensitive.len() != sensitive.len() {
                    return Err(crate::Error::Invalid("score width does not match labels".into()));
                }
                user.append_option(turn.user_id.as_deref());
                conv.append_option(turn.conversation_id.as_deref());
                let d = decide(topics, sensitive, policy, s);
                let ok = d.reason.ad_eligible();
                for (c, &v) in scols.iter_mut().zip(&s.sensitive) {
                    c[i] = v;
                }
                svalid[i] = true;
                if ok {
                    for (c, &v) in tcols.iter_mut().zip(&s.topics) {
                        c[i] = v;
                    }
                    tvalid[i] = true;
                }
                d.interests.iter().for_each(|l| interests.values().append_value(l));
                interests.append(true);
                d.sensitive_hits.iter().for_each(|l| shits.values().append_value(l));
                shits.append(true);
                elig.append_value(ok);
                reason.append_value(d.reason.to_string());
                tokens.append_value(s.tokens);
                windows.append_value(s.windows);
            }
            (Ok(turn), Outcome::Suppressed(sup)) => {
                user.append_option(turn.user_id.as_deref());
                conv.append_option(turn.conversation_id.as_deref());
                interests.append(true);
                shits.append(true);
                elig.append_value(false);
                reason.append_value(crate::gate::Reason::Suppressed(sup.clone()).to_string());
                tokens.append_null();
                windows.append_null();
            }
            (Err(rej), Outcome::Rejected) => {
                user.append_null();
                conv.append_null();
                interests.append(true);
                shits.append(true);
                elig.append_value(false);
                reason.append_value(crate::gate::Reason::Rejected(rej.reason.clone()).to_string());
                tokens.append_null();
                windows.append_null();
            }
            _ => {
                return Err(crate::Error::Invalid(format!("row {i}: scores do not match the row")))
            }
        }
    }
    let mut columns: Vec<ArrayRef> =
        vec![Arc::new(id.finish()), Arc::new(user.finish()), Arc::new(conv.finish())];
    if !topics.is_empty() {
        columns.push(score_struct(topics, tcols, &tvalid, &proxy));
    }
    if !sensitive.is_empty() {
        columns.push(score_struct(sensitive, scols, &svalid, &vec![false; sensitive.len()]));
    }
    columns.extend::<[ArrayRef; 6]>([
        Arc::new(interests.finish()),
        Arc::new(shits.finish()),
        Arc::new(elig.finish()),
        Arc::new(reason.finish()),
        Arc::new(tokens.finish()),
        Arc::new(windows.finish()),
    ]);
    Ok(RecordBatch::try_new(schema(topics, sensitive), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::Class;

    fn labels(names: &[(&str, f32, bool)]) -> Vec<LabelMeta> {
        names
            .iter()
            .map(|&(n, t, tr)| LabelMeta {
                name: n.into(),
                threshold: t,
                trained: tr,
                calibration: None,
            })
            .collect()
    }

    /// The post-inference gate as a table: sensitive scores × topic proxies → decision.
    #[test]
    fn gate_decision_table() {
        let topics = labels(&[("travel", 0.5, true), ("fitness", 0.5, true), ("pets", 1.0, false)]);
        let sensitive =
            labels(&[("health", 0.4, true), ("religion", 0.6, true), ("dna", 1.0, false)]);
        let plain = Policy::default();
        let mut proxied = Policy::default();
        proxied.topic_proxies.insert("fitness".into(), vec!["health".into()]);
        let s = |t: [f32; 3], x: [f32; 3]| TurnScores {
            topics: t.to_vec(),
            sensitive: x.to_vec(),
            tokens: 5,
            windows: 1,
        };
        #[allow(clippy::type_complexity)]
        let table: Vec<(&Policy, TurnScores, bool, &str, Vec<&str>, Vec<&str>)> = vec![
            // nothing sensitive: interests at or above threshold, untrained labels never fire
            (
                &plain,
                s([0.9, 0.5, 1.0], [0.1, 0.1, 1.0]),
                true,
                "ok",
                vec![],
                vec!["travel", "fitness"],
            ),
            // exactly at a sensitive threshold vetoes; interests are withheld
            (
                &plain,
                s([0.9, 0.9, 0.0], [0.4, 0.0, 0.0]),
                false,
                "sensitive:health",
                vec!["health"],
                vec![],
            ),
            // two hits: the reason names the highest-scoring one
            (
                &plain,
                s([0.9, 0.0, 0.0], [0.5, 0.95, 0.0]),
                false,
                "sensitive:religion",
                vec!["health", "religion"],
                vec![],
            ),
            // just under every threshold: eligible
            (&plain, s([0.49, 0.49, 0.0], [0.39, 0.59, 0.0]), true, "ok", vec![], vec![]),
            // a proxy topic is never an interest, the others still are
            (&proxied, s([0.9, 0.9, 0.0], [0.1, 0.1, 0.0]), true, "ok", vec![], vec!["travel"]),
            // a NaN anywhere fails closed, even with every other score clean
            (
                &plain,
                s([0.9, f32::NAN, 0.0], [0.1, 0.1, 0.0]),
                false,
                "score_not_finite:fitness",
                vec![],
                vec![],
            ),
            (
                &plain,
                s([0.9, 0.0, 0.0], [0.1, 0.1, f32::NAN]),
                false,
                "score_not_finite:dna",
                vec![],
                vec![],
            ),
            // an infinite score is not a hit to trust either: the non-finite rule comes first
            (
                &plain,
                s([0.9, 0.0, 0.0], [f32::INFINITY, 0.1, 0.0]),
                false,
                "score_not_finite:health",
                vec!["health"],
                vec![],
            ),
            // proxy and veto together: the veto decides
            (
                &proxied,
                s([0.9, 0.9, 0.0], [0.9, 0.1, 0.0]),
                false,
                "sensitive:health",
                vec!["health"],
                vec![],
            ),
        ];
        for (i, (p, sc, ok, why, sh, ints)) in table.into_iter().enumerate() {
            assert_eq!(
                Class::of_reason(why),
                if ok { Class::Ok } else { Class::Vetoed },
                "row {i}: class of {why}"
            );
            let d = decide(&topics, &sensitive, p, &sc);
            let got = (d.reason.ad_eligible(), d.reason.to_string(), d.sensitive_hits, d.interests);
            assert_eq!(got, (ok, why.to_string(), sh, ints), "row {i}");
        }
    }

    /// A model without a trained sensitive label cannot veto anything: no turn is ad-eligible
    /// unless the policy explicitly allows it.
    #[test]
    fn no_sensitive_head_fails_closed_unless_the_policy_allows_it() {
        let topics = labels(&[("travel", 0.5, true)]);
        let untrained = labels(&[("health", 0.5, false)]);
        let sc = |n: usize| TurnScores {
            topics: vec![0.9],
            sensitive: vec![0.0; n],
            tokens: 3,
            windows: 1,
        };
        let strict = Policy::default();
        for (sens, n) in [(&[][..], 0), (&untrained[..], 1)] {
            let d = decide(&topics, sens, &strict, &sc(n));
            assert_eq!(d.reason.to_string(), "no_sensitive_head");
            assert!(!d.reason.ad_eligible() && d.interests.is_empty());
            assert_eq!(Class::of_reason("no_sensitive_head"), Class::Vetoed);
        }
        let lax = Policy { require_sensitive_head: false, ..Policy::default() };
        let d = decide(&topics, &[], &lax, &sc(0));
        assert_eq!((d.reason.to_string(), d.interests), ("ok".to_string(), vec!["travel"]));
    }
}
