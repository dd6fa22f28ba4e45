//! Input rows: chat turns parsed from JSON lines, or rejected with a reason.
//!
//! Every input line that is not blank becomes exactly one [`Row`]: either a [`Turn`] to score or
//! a [`Rejection`] that says why not. Rejections carry the line number and, when it could be read,
//! the row's id, but never the text.

use serde_json::Value;
use std::io::BufRead;

/// Who wrote a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The person.
    User,
    /// The AI assistant.
    Assistant,
}

/// One chat turn to score.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Turn {
    /// The row's id (required).
    pub id: String,
    /// The message text (required, non-empty). Personal data: never log it.
    pub text: String,
    /// Carried through to the output when given.
    pub user_id: Option<String>,
    /// Carried through to the output when given.
    pub conversation_id: Option<String>,
    /// Position of the turn in its conversation.
    pub turn: Option<i64>,
    /// Who wrote it.
    pub role: Option<Role>,
    /// ISO 3166-1 alpha-2 region of the subject, upper-case.
    pub region: Option<String>,
    /// Whether the subject consented to ad use.
    pub consent_ads: Option<bool>,
    /// Whether the subject is a minor.
    pub is_minor: Option<bool>,
    /// Whether the conversation is linked to an ad account.
    pub account_linked: Option<bool>,
    /// Timestamp, as given.
    pub ts: Option<String>,
}

/// Why an input row was not scored. Its [`RejectReason::code`] goes into the output's `reason`
/// column as `rejected:<code>`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The line is not valid JSON.
    BadJson,
    /// The line is JSON but not an object.
    NotObject,
    /// No `id` field, or it is null.
    MissingId,
    /// No `text` field, or it is null.
    MissingText,
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// `text` is empty or only white space.
    EmptyText,
    /// A field has the wrong JSON type (the field's name).
    TypeMismatch(&'static str),
    /// The text is longer than the reader's limit (see [`JsonlReader::max_text_bytes`]).
    TooLong,
    /// A field has a value outside its domain (the field's name), e.g. a region that is not a
    /// two-letter code or a role other than `user` / `assistant`.
    BadValue(&'static str),
}

impl RejectReason {
    /// The short code used in `rejected:<code>`.
    pub fn code(&self) -> String {
        match self {
            RejectReason::BadJson => "bad_json".into(),
            RejectReason::NotObject => "not_object".into(),
            RejectReason::MissingId => "missing_id".into(),
            RejectReason::MissingText => "missing_text".into(),
            RejectReason::InvalidUtf8 => "invalid_utf8".into(),
            RejectReason::EmptyText => "empty_text".into(),
            RejectReason::TypeMismatch(f) => format!("type_mismatch:{f}"),
            RejectReason::BadValue(f) => format!("bad_value:{f}"),
            RejectReason::TooLong => "too_long".into(),
        }
    }
}

/// A row that will not be scored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The row's id when it could be read.
    pub id: Option<String>,
    /// Why.
    pub reason: RejectReason,
}

/// One input row: its 1-based line number and either a turn or a rejection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// 1-based line number in its input.
    pub line: u64,
    /// The parsed turn, or why it was rejected.
    pub turn: Result<Turn, Rejection>,
}

impl Row {
    /// The row's id, when known.
    pub fn id(&self) -> Option<&str> {
        match &self.turn {
            Ok(t) => Some(&t.id),
            Err(r) => r.id.as_deref(),
        }
    }
}

fn id_of(v: &Value) -> Result<Option<String>, RejectReason> {
    match v.get("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(RejectReason::TypeMismatch("id")),
    }
}

fn opt_string(v: &Value, field: &'static str) -> Result<Option<String>, RejectReason> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(RejectReason::TypeMismatch(field)),
    }
}

fn opt_bool(v: &Value, field: &'static str) -> Result<Option<bool>, RejectReason> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(RejectReason::TypeMismatch(field)),
    }
}

/// Reads the optional fields of a turn.
fn optional_fields(v: &Value, t: &mut Turn) -> Result<(), RejectReason> {
    t.user_id = opt_string(v, "user_id")?;
    t.conversation_id = opt_string(v, "conversation_id")?;
    t.turn = match v.get("turn") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_i64().ok_or(RejectReason::TypeMismatch("turn"))?),
        Some(_) => return Err(RejectReason::TypeMismatch("turn")),
    };
    t.role = match v.get("role") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => return Err(RejectReason::BadValue("role")),
        },
        Some(_) => return Err(RejectReason::TypeMismatch("role")),
    };
    t.region = match opt_string(v, "region")? {
        None => None,
        Some(r) if r.len() == 2 && r.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(r.to_ascii_uppercase())
        }
        Some(_) => return Err(RejectReason::BadValue("region")),
    };
    t.consent_ads = opt_bool(v, "consent_ads")?;
    t.is_minor = opt_bool(v, "is_minor")?;
    t.account_linked = opt_bool(v, "account_linked")?;
    t.ts = opt_string(v, "ts")?;
    Ok(())
}

/// Parses one JSONL line (without its line terminator) into a row, with no limit on the text's
/// length.
pub fn parse_line(bytes: &[u8], line: u64) -> Row {
    parse_line_limited(bytes, line, usize::MAX)
}

/// Parses one JSONL line into a row; a text longer than `max_text_bytes` is rejected as
/// `too_long`.
pub fn parse_line_limited(bytes: &[u8], line: u64, max_text_bytes: usize) -> Row {
    let reject = |id, reason| Row { line, turn: Err(Rejection { id, reason }) };
    if std::str::from_utf8(bytes).is_err() {
        // Recover the id if the rest of the line is sound, so the rejection can be traced.
        let lossy = String::from_utf8_lossy(bytes);
        let id = serde_json::from_str::<Value>(&lossy).ok().and_then(|v| id_of(&v).ok().flatten());
        return reject(id, RejectReason::InvalidUtf8);
    }
    let v: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(_) => return reject(None, RejectReason::BadJson),
    };
    if !v.is_object() {
        return reject(None, RejectReason::NotObject);
    }
    let id = match id_of(&v) {
        Ok(Some(id)) => id,
        Ok(None) => return reject(None, RejectReason::MissingId),
        Err(r) => return reject(None, r),
    };
    let text = match v.get("text") {
        None | Some(Value::Null) => return reject(Some(id), RejectReason::MissingText),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return reject(Some(id), RejectReason::TypeMismatch("text")),
    };
    if text.trim().is_empty() {
        return reject(Some(id), RejectReason::EmptyText);
    }
    if text.len() > max_text_bytes {
        return reject(Some(id), RejectReason::TooLong);
    }
    let mut turn = Turn { id, text, ..Default::default() };
    if let Err(r) = optional_fields(&v, &mut turn) {
        return reject(Some(turn.id), r);
    }
    Row { line, turn: Ok(turn) }
}

/// Streams rows from JSON lines. Blank lines are skipped (and counted); `\r\n` endings are
/// accepted. An I/O error ends the stream with that error.
#[derive(Debug)]
pub struct JsonlReader<R> {
    inner: R,
    line: u64,
    buf: Vec<u8>,
    blank: u64,
    max_text: usize,
}

impl<R: BufRead> JsonlReader<R> {
    /// Wraps a buffered reader.
    pub fn new(inner: R) -> Self {
        JsonlReader { inner, line: 0, buf: Vec::new(), blank: 0, max_text: usize::MAX }
    }

    /// Rejects (as `too_long`) turns whose text exceeds `n` bytes.
    pub fn max_text_bytes(mut self, n: usize) -> Self {
        self.max_text = n;
        self
    }

    /// Blank lines seen so far.
    pub fn blank_lines(&self) -> u64 {
        self.blank
    }

    /// Reads up to `max` rows. An empty vector means the input is exhausted.
    ///
    /// # Errors
    /// The underlying I/O error.
    pub fn next_chunk(&mut self, max: usize) -> std::io::Result<Vec<Row>> {
        let mut rows = Vec::new();
        while rows.len() < max {
            self.buf.clear();
            if self.inner.read_until(b'\n', &mut self.buf)? == 0 {
                break;
            }
            self.line += 1;
            let mut l = &self.buf[..];
            if let Some(s) = l.strip_suffix(b"\n") {
                l = s;
            }
            if let Some(s) = l.strip_suffix(b"\r") {
                l = s;
            }
            if l.iter().all(u8::is_ascii_whitespace) {
                self.blank += 1;
                continue;
            }
            rows.push(parse_line_limited(l, self.line, self.max_text));
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(line: &[u8]) -> Option<RejectReason> {
        parse_line(line, 1).turn.err().map(|r| r.reason)
    }

    #[test]
    fn good_row() {
        let r = parse_line(br#"{"id":"a","text":"hi there","user_id":7}"#, 3);
        let t = r.turn.unwrap();
        assert_eq!(
            (t.id.as_str(), t.text.as_str(), t.user_id.as_deref()),
            ("a", "hi there", Some("7"))
        );
        assert_eq!(r.line, 3);
    }

    #[test]
    fn every_bad_kind_is_rejected_with_its_reason() {
        assert_eq!(reason(b"{not json"), Some(RejectReason::BadJson));
        assert_eq!(reason(b"[1,2]"), Some(RejectReason::NotObject));
        assert_eq!(reason(br#"{"text":"x"}"#), Some(RejectReason::MissingId));
        assert_eq!(reason(br#"{"id":"x"}"#), Some(RejectReason::MissingText));
        assert_eq!(reason(br#"{"id":"x","text":"  "}"#), Some(RejectReason::EmptyText));
        assert_eq!(reason(br#"{"id":"x","text":5}"#), Some(RejectReason::TypeMismatch("text")));
        assert_eq!(reason(br#"{"id":[1],"text":"a"}"#), Some(RejectReason::TypeMismatch("id")));
        assert_eq!(
            reason(br#"{"id":"x","text":"a","consent_ads":"yes"}"#),
            Some(RejectReason::TypeMismatch("consent_ads"))
        );
        assert_eq!(
            reason(br#"{"id":"x","text":"a","region":"Germany"}"#),
            Some(RejectReason::BadValue("region"))
        );
        assert_eq!(
            reason(br#"{"id":"x","text":"a","role":"system"}"#),
            Some(RejectReason::BadValue("role"))
        );
        assert_eq!(
            reason(br#"{"id":"x","text":"a","turn":1.5}"#),
            Some(RejectReason::TypeMismatch("turn"))
        );
        let mut bad = br#"{"id":"u1","text":"caf"#.to_vec();
        bad.extend_from_slice(&[0xff, 0xfe]);
        bad.extend_from_slice(br#""}"#);
        let r = parse_line(&bad, 9);
        let rej = r.turn.unwrap_err();
        assert_eq!(rej.reason, RejectReason::InvalidUtf8);
        assert_eq!(rej.id.as_deref(), Some("u1"), "id is recovered for tracing");
    }

    #[test]
    fn text_over_the_limit_is_rejected_as_too_long() {
        let long = parse_line_limited(br#"{"id":"x","text":"abcdef"}"#, 1, 5);
        assert_eq!(long.turn.unwrap_err().reason, RejectReason::TooLong);
        assert!(parse_line_limited(br#"{"id":"x","text":"abcde"}"#, 1, 5).turn.is_ok());
    }

    #[test]
    fn reader_counts_lines_and_skips_blanks() {
        let data = b"{\"id\":\"1\",\"text\":\"a\"}\r\n\n   \n{\"id\":\"2\",\"text\":\"b\"}";
        let mut r = JsonlReader::new(&data[..]);
        let rows = r.next_chunk(10).unwrap();
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![1, 4]);
        assert_eq!(r.blank_lines(), 2);
        assert!(r.next_chunk(10).unwrap().is_empty());
    }
}
