//! Labeled rows in the `shared/data` schema: `{"text", "topics": [...] | null,
//! "sensitive": [...] | null, "source", "id"}`. A `null` head was not annotated: it is masked out
//! of training and evaluation, never counted as a negative.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;

/// One labeled row.
pub struct Example {
    pub id: String,
    pub text: String,
    pub source: String,
    /// Indices into the topic vocabulary, or None when not annotated.
    pub topics: Option<Vec<usize>>,
    /// Indices into the sensitive vocabulary, or None when not annotated.
    pub sensitive: Option<Vec<usize>>,
    /// Conversation and position in it, when the row is part of one (for `--context`).
    pub conversation_id: Option<String>,
    pub turn: Option<i64>,
}

fn labels_of(
    v: &Value,
    vocab: &[&str],
    path: &Path,
    line: usize,
    field: &str,
) -> Result<Option<Vec<usize>>> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                let s = x.as_str().unwrap_or("");
                vocab.iter().position(|l| *l == s).with_context(|| {
                    format!("{}:{line}: field {field:?} has label {s:?}, which the vocabulary does not have", path.display())
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => bail!("{}:{line}: field {field:?} is not a list or null", path.display()),
    }
}

/// Reads one JSONL file of labeled rows. Errors name the file and line.
pub fn load_file(path: &Path, topics: &[&str], sensitive: &[&str]) -> Result<Vec<Example>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: not UTF-8", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        let text = v.get("text").and_then(Value::as_str).filter(|t| !t.trim().is_empty());
        let Some(text) = text else {
            bail!("{}:{}: field \"text\" is missing or empty", path.display(), i + 1)
        };
        out.push(Example {
            id: v
                .get("id")
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .unwrap_or_else(|| format!("line {}", i + 1)),
            text: text.to_string(),
            source: v.get("source").and_then(Value::as_str).unwrap_or("unknown").to_string(),
            topics: labels_of(&v, topics, path, i + 1, "topics")?,
            sensitive: labels_of(&v, sensitive, path, i + 1, "sensitive")?,
            conversation_id: v.get("conversation_id").and_then(Value::as_str).map(str::to_string),
            turn: v.get("turn").and_then(Value::as_i64),
        });
    }
    Ok(out)
}
