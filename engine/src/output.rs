//! The output: one Arrow `RecordBatch` row per input row, in input order.
//!
//! The schema is defined once, in [`schema`]; see DESIGN.md for the meaning of each column.
//! In this version `ad_eligible` applies the sensitive veto only (the full policy gate is a
//! later step): a scored turn is ad-eligible unless a trained sensitive label reaches its
//! threshold, in which case `reason` is `sensitive:<label>` for the highest-scoring such label,
//! `topics` is null and `interests` is empty.

use crate::format::LabelMeta;
use crate::input::Row;
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
    /// Tokens scored (special tokens included, after truncation).
    pub tokens: u32,
    /// Windows used (1 until long-turn windows exist).
    pub windows: u32,
}

fn struct_fields(labels: &[LabelMeta]) -> Fields {
    labels.iter().map(|l| Field::new(&l.name, DataType::Float32, true)).collect()
}

/// The output schema for a model's label vocabularies.
pub fn schema(topics: &[LabelMeta], sensitive: &[LabelMeta]) -> SchemaRef {
    let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("conversation_id", DataType::Utf8, true),
        Field::new("topics", DataType::Struct(struct_fields(topics)), true),
        Field::new("sensitive", DataType::Struct(struct_fields(sensitive)), true),
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
    ]))
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

/// The gate's decision for one scored turn: `(ad_eligible, reason, sensitive hits, interests)`.
pub fn decide<'a>(
    topics: &'a [LabelMeta],
    sensitive: &'a [LabelMeta],
    s: &TurnScores,
) -> (bool, String, Vec<&'a str>, Vec<&'a str>) {
    let shits = hits(sensitive, &s.sensitive);
    if shits.is_empty() {
        (true, "ok".into(), shits, hits(topics, &s.topics))
    } else {
        // The highest-scoring sensitive hit names the reason.
        let top = sensitive
            .iter()
            .zip(&s.sensitive)
            .filter(|(l, _)| shits.contains(&l.name.as_str()))
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(l, _)| l.name.as_str())
            .unwrap_or_default();
        (false, format!("sensitive:{top}"), shits, Vec::new())
    }
}

fn score_struct(labels: &[LabelMeta], cols: Vec<Vec<f32>>, valid: &[bool]) -> ArrayRef {
    let nulls = NullBuffer::from(valid.to_vec());
    let arrays: Vec<ArrayRef> = cols
        .into_iter()
        .map(|c| Arc::new(Float32Array::new(c.into(), Some(nulls.clone()))) as ArrayRef)
        .collect();
    if labels.is_empty() {
        return Arc::new(StructArray::new_empty_fields(valid.len(), Some(nulls)));
    }
    Arc::new(StructArray::new(struct_fields(labels), arrays, Some(nulls)))
}

/// Builds the output batch for `rows`; `scores[i]` is `Some` exactly when `rows[i]` is a turn.
///
/// # Errors
/// [`crate::Error::Arrow`] if Arrow rejects the arrays (a bug), or [`crate::Error::Invalid`] if
/// `scores` does not match `rows`.
pub fn build_batch(
    topics: &[LabelMeta],
    sensitive: &[LabelMeta],
    rows: &[Row],
    scores: &[Option<TurnScores>],
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
    let mut svalid = vec![false; n];
    for (i, (row, sc)) in rows.iter().zip(scores).enumerate() {
        id.append_option(row.id());
        match (&row.turn, sc) {
            (Ok(turn), Some(s)) => {
                if s.topics.len() != topics.len() || s.sensitive.len() != sensitive.len() {
                    return Err(crate::Error::Invalid("score width does not match labels".into()));
                }
                user.append_option(turn.user_id.as_deref());
                conv.append_option(turn.conversation_id.as_deref());
                let (ok, why, sh, ints) = decide(topics, sensitive, s);
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
                ints.iter().for_each(|l| interests.values().append_value(l));
                interests.append(true);
                sh.iter().for_each(|l| shits.values().append_value(l));
                shits.append(true);
                elig.append_value(ok);
                reason.append_value(why);
                tokens.append_value(s.tokens);
                windows.append_value(s.windows);
            }
            (Err(rej), None) => {
                user.append_null();
                conv.append_null();
                interests.append(true);
                shits.append(true);
                elig.append_value(false);
                reason.append_value(format!("rejected:{}", rej.reason.code()));
                tokens.append_null();
                windows.append_null();
            }
            _ => {
                return Err(crate::Error::Invalid(format!("row {i}: scores do not match the row")))
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(user.finish()),
        Arc::new(conv.finish()),
        score_struct(topics, tcols, &tvalid),
        score_struct(sensitive, scols, &svalid),
        Arc::new(interests.finish()),
        Arc::new(shits.finish()),
        Arc::new(elig.finish()),
        Arc::new(reason.finish()),
        Arc::new(tokens.finish()),
        Arc::new(windows.finish()),
    ];
    Ok(RecordBatch::try_new(schema(topics, sensitive), columns)?)
}
