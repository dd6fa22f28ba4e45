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

/// The input column (or JSON key) that holds each field. Default: the field's own name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldMap {
    /// `id` (required).
    pub id: String,
    /// `text` (required).
    pub text: String,
    /// `user_id`.
    pub user_id: String,
    /// `conversation_id`.
    pub conversation_id: String,
    /// `turn`.
    pub turn: String,
    /// `role`.
    pub role: String,
    /// `region`.
    pub region: String,
    /// `consent_ads`.
    pub consent_ads: String,
    /// `is_minor`.
    pub is_minor: String,
    /// `account_linked`.
    pub account_linked: String,
    /// `ts`.
    pub ts: String,
}

impl Default for FieldMap {
    fn default() -> Self {
        FieldMap {
            id: "id".into(),
            text: "text".into(),
            user_id: "user_id".into(),
            conversation_id: "conversation_id".into(),
            turn: "turn".into(),
            role: "role".into(),
            region: "region".into(),
            consent_ads: "consent_ads".into(),
            is_minor: "is_minor".into(),
            account_linked: "account_linked".into(),
            ts: "ts".into(),
        }
    }
}

/// How input rows are read.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Where each field comes from.
    pub fields: FieldMap,
    /// Texts longer than this many bytes are rejected as `too_long`.
    pub max_text_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { fields: FieldMap::default(), max_text_bytes: usize::MAX }
    }
}

fn id_of(v: &Value, key: &str) -> Result<Option<String>, RejectReason> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(RejectReason::TypeMismatch("id")),
    }
}

fn opt_string(v: &Value, key: &str, field: &'static str) -> Result<Option<String>, RejectReason> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(RejectReason::TypeMismatch(field)),
    }
}

fn opt_bool(v: &Value, key: &str, field: &'static str) -> Result<Option<bool>, RejectReason> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(RejectReason::TypeMismatch(field)),
    }
}

/// Reads the optional fields of a turn.
fn optional_fields(v: &Value, f: &FieldMap, t: &mut Turn) -> Result<(), RejectReason> {
    t.user_id = opt_string(v, &f.user_id, "user_id")?;
    t.conversation_id = opt_string(v, &f.conversation_id, "conversation_id")?;
    t.turn = match v.get(&f.turn) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_i64().ok_or(RejectReason::TypeMismatch("turn"))?),
        Some(_) => return Err(RejectReason::TypeMismatch("turn")),
    };
    t.role = match v.get(&f.role) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_role(s)?),
        Some(_) => return Err(RejectReason::TypeMismatch("role")),
    };
    t.region = opt_string(v, &f.region, "region")?.map(|r| parse_region(&r)).transpose()?;
    t.consent_ads = opt_bool(v, &f.consent_ads, "consent_ads")?;
    t.is_minor = opt_bool(v, &f.is_minor, "is_minor")?;
    t.account_linked = opt_bool(v, &f.account_linked, "account_linked")?;
    t.ts = opt_string(v, &f.ts, "ts")?;
    Ok(())
}

fn parse_role(s: &str) -> Result<Role, RejectReason> {
    match s {
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        _ => Err(RejectReason::BadValue("role")),
    }
}

fn parse_region(r: &str) -> Result<String, RejectReason> {
    if r.len() == 2 && r.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(r.to_ascii_uppercase())
    } else {
        Err(RejectReason::BadValue("region"))
    }
}

/// Checks a turn's text: empty and over-long texts are rejected.
fn check_text(text: &str, max: usize) -> Result<(), RejectReason> {
    if text.trim().is_empty() {
        Err(RejectReason::EmptyText)
    } else if text.len() > max {
        Err(RejectReason::TooLong)
    } else {
        Ok(())
    }
}

/// Parses one JSONL line (without its line terminator) into a row, with no limit on the text's
/// length.
pub fn parse_line(bytes: &[u8], line: u64) -> Row {
    parse_line_with(bytes, line, &ReadOptions::default())
}

/// Parses one JSONL line into a row; a text longer than `max_text_bytes` is rejected as
/// `too_long`.
pub fn parse_line_limited(bytes: &[u8], line: u64, max_text_bytes: usize) -> Row {
    parse_line_with(bytes, line, &ReadOptions { max_text_bytes, ..Default::default() })
}

/// Parses one JSONL line with the given field names and limits.
pub fn parse_line_with(bytes: &[u8], line: u64, opts: &ReadOptions) -> Row {
    let f = &opts.fields;
    let reject = |id, reason| Row { line, turn: Err(Rejection { id, reason }) };
    if std::str::from_utf8(bytes).is_err() {
        // Recover the id if the rest of the line is sound, so the rejection can be traced.
        let lossy = String::from_utf8_lossy(bytes);
        let id = serde_json::from_str::<Value>(&lossy)
            .ok()
            .and_then(|v| id_of(&v, &f.id).ok().flatten());
        return reject(id, RejectReason::InvalidUtf8);
    }
    let v: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(_) => return reject(None, RejectReason::BadJson),
    };
    if !v.is_object() {
        return reject(None, RejectReason::NotObject);
    }
    let id = match id_of(&v, &f.id) {
        Ok(Some(id)) => id,
        Ok(None) => return reject(None, RejectReason::MissingId),
        Err(r) => return reject(None, r),
    };
    let text = match v.get(&f.text) {
        None | Some(Value::Null) => return reject(Some(id), RejectReason::MissingText),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return reject(Some(id), RejectReason::TypeMismatch("text")),
    };
    if let Err(r) = check_text(&text, opts.max_text_bytes) {
        return reject(Some(id), r);
    }
    let mut turn = Turn { id, text, ..Default::default() };
    if let Err(r) = optional_fields(&v, f, &mut turn) {
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
    opts: ReadOptions,
}

impl<R: BufRead> JsonlReader<R> {
    /// Wraps a buffered reader.
    pub fn new(inner: R) -> Self {
        JsonlReader { inner, line: 0, buf: Vec::new(), blank: 0, opts: ReadOptions::default() }
    }

    /// Rejects (as `too_long`) turns whose text exceeds `n` bytes.
    pub fn max_text_bytes(mut self, n: usize) -> Self {
        self.opts.max_text_bytes = n;
        self
    }

    /// Reads with these field names and limits.
    pub fn with_options(mut self, opts: ReadOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Lines read so far (blank ones included).
    pub fn lines_read(&self) -> u64 {
        self.line
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
            rows.push(parse_line_with(l, self.line, &self.opts));
        }
        Ok(rows)
    }
}

/// Converts an Arrow batch of turns into rows; `first_row` is the 1-based number of its first row
/// in its input. Column types: strings as `Utf8`/`LargeUtf8`/`Utf8View` (ids and user and
/// conversation ids may also be integers), booleans as `Boolean`, `turn` as an integer.
///
/// # Errors
/// [`crate::Error::Invalid`] naming a column whose type cannot hold its field, or a missing
/// `id` or `text` column: a problem of the whole input, not of one row. Bad values in a row
/// (null or empty text, a region that is not a code) reject that row.
///
/// # Example
///
/// ```
/// use arrow_array::{ArrayRef, RecordBatch, StringArray};
/// use std::sync::Arc;
/// use turnscore::input::{rows_from_batch, ReadOptions};
/// let b = RecordBatch::try_from_iter(vec![
///     ("id", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef),
///     ("message", Arc::new(StringArray::from(vec![Some("hello"), None])) as ArrayRef),
/// ])?;
/// let mut opts = ReadOptions::default();
/// opts.fields.text = "message".into();
/// let rows = rows_from_batch(&b, 1, &opts)?;
/// assert!(rows[0].turn.is_ok());
/// assert_eq!(rows[1].turn.as_ref().unwrap_err().reason.code(), "missing_text");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn rows_from_batch(
    batch: &arrow_array::RecordBatch,
    first_row: u64,
    opts: &ReadOptions,
) -> crate::Result<Vec<Row>> {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    use arrow_schema::DataType;
    let f = &opts.fields;
    let bad = |field: &str, col: &str, t: &DataType| {
        crate::Error::Invalid(format!(
            "column {col:?} ({field}) has type {t}, which cannot hold it"
        ))
    };
    // Each column becomes a closure row -> Option<String> (or bool / i64).
    type Getter<'a, T> = Box<dyn Fn(usize) -> Option<T> + 'a>;
    let string_col =
        |field: &str, col: &str, ints: bool| -> crate::Result<Option<Getter<'_, String>>> {
            let Some(a) = batch.column_by_name(col) else { return Ok(None) };
            let g: Getter<'_, String> = match a.data_type() {
                DataType::Utf8 => {
                    let a = a.as_string::<i32>();
                    Box::new(move |i| a.is_valid(i).then(|| a.value(i).to_string()))
                }
                DataType::LargeUtf8 => {
                    let a = a.as_string::<i64>();
                    Box::new(move |i| a.is_valid(i).then(|| a.value(i).to_string()))
                }
                DataType::Utf8View => {
                    let a = a.as_string_view();
                    Box::new(move |i| a.is_valid(i).then(|| a.value(i).to_string()))
                }
                DataType::Int64 if ints => {
                    let a = a.as_primitive::<arrow_array::types::Int64Type>();
                    Box::new(move |i| a.is_valid(i).then(|| a.value(i).to_string()))
                }
                DataType::Int32 if ints => {
                    let a = a.as_primitive::<arrow_array::types::Int32Type>();
                    Box::new(move |i| a.is_valid(i).then(|| a.value(i).to_string()))
                }
                t => return Err(bad(field, col, t)),
            };
            Ok(Some(g))
        };
    let bool_col = |field: &str, col: &str| -> crate::Result<Option<Getter<'_, bool>>> {
        let Some(a) = batch.column_by_name(col) else { return Ok(None) };
        match a.data_type() {
            DataType::Boolean => {
                let a = a.as_boolean();
                Ok(Some(Box::new(move |i| a.is_valid(i).then(|| a.value(i)))))
            }
            t => Err(bad(field, col, t)),
        }
    };
    let id = string_col("id", &f.id, true)?
        .ok_or_else(|| crate::Error::Invalid(format!("no id column {:?}", f.id)))?;
    let text = string_col("text", &f.text, false)?
        .ok_or_else(|| crate::Error::Invalid(format!("no text column {:?}", f.text)))?;
    let user = string_col("user_id", &f.user_id, true)?;
    let conv = string_col("conversation_id", &f.conversation_id, true)?;
    let role = string_col("role", &f.role, false)?;
    let region = string_col("region", &f.region, false)?;
    let ts = string_col("ts", &f.ts, true)?;
    let consent = bool_col("consent_ads", &f.consent_ads)?;
    let minor = bool_col("is_minor", &f.is_minor)?;
    let linked = bool_col("account_linked", &f.account_linked)?;
    let turn: Option<Getter<'_, i64>> = match batch.column_by_name(&f.turn) {
        None => None,
        Some(a) => match arrow_cast::cast(a, &DataType::Int64) {
            Ok(c) if a.data_type().is_integer() => {
                let c = c.as_primitive::<arrow_array::types::Int64Type>().clone();
                Some(Box::new(move |i| c.is_valid(i).then(|| c.value(i))))
            }
            _ => return Err(bad("turn", &f.turn, a.data_type())),
        },
    };
    let get = |g: &Option<Getter<'_, String>>, i| g.as_ref().and_then(|g| g(i));
    let getb = |g: &Option<Getter<'_, bool>>, i| g.as_ref().and_then(|g| g(i));
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let line = first_row + i as u64;
        let reject = |id, reason| Row { line, turn: Err(Rejection { id, reason }) };
        let Some(idv) = id(i) else {
            rows.push(reject(None, RejectReason::MissingId));
            continue;
        };
        let Some(tv) = text(i) else {
            rows.push(reject(Some(idv), RejectReason::MissingText));
            continue;
        };
        if let Err(r) = check_text(&tv, opts.max_text_bytes) {
            rows.push(reject(Some(idv), r));
            continue;
        }
        let role = match get(&role, i).map(|r| parse_role(&r)).transpose() {
            Ok(r) => r,
            Err(r) => {
                rows.push(reject(Some(idv), r));
                continue;
            }
        };
        let region = match get(&region, i).map(|r| parse_region(&r)).transpose() {
            Ok(r) => r,
            Err(r) => {
                rows.push(reject(Some(idv), r));
                continue;
            }
        };
        rows.push(Row {
            line,
            turn: Ok(Turn {
                id: idv,
                text: tv,
                user_id: get(&user, i),
                conversation_id: get(&conv, i),
                turn: turn.as_ref().and_then(|g| g(i)),
                role,
                region,
                consent_ads: getb(&consent, i),
                is_minor: getb(&minor, i),
                account_linked: getb(&linked, i),
                ts: get(&ts, i),
            }),
        });
    }
    Ok(rows)
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

#[cfg(test)]
mod arrow_tests {
    use super::*;
    use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;

    #[test]
    fn rows_from_a_mapped_arrow_batch() {
        let b = RecordBatch::try_from_iter(vec![
            (
                "msg_id",
                Arc::new(Int64Array::from(vec![Some(1), Some(2), None, Some(4)])) as ArrayRef,
            ),
            (
                "message",
                Arc::new(StringArray::from(vec![Some("hello"), Some(""), Some("x"), None]))
                    as ArrayRef,
            ),
            (
                "consent_ads",
                Arc::new(BooleanArray::from(vec![Some(true), None, None, None])) as ArrayRef,
            ),
            ("region", Arc::new(StringArray::from(vec![Some("us"), None, None, None])) as ArrayRef),
        ])
        .unwrap();
        let mut opts = ReadOptions::default();
        opts.fields.id = "msg_id".into();
        opts.fields.text = "message".into();
        let rows = rows_from_batch(&b, 10, &opts).unwrap();
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![10, 11, 12, 13]);
        let t = rows[0].turn.as_ref().unwrap();
        assert_eq!(
            (t.id.as_str(), t.text.as_str(), t.consent_ads, t.region.as_deref()),
            ("1", "hello", Some(true), Some("US"))
        );
        let reasons: Vec<_> =
            rows[1..].iter().map(|r| r.turn.as_ref().unwrap_err().reason.clone()).collect();
        assert_eq!(
            reasons,
            vec![RejectReason::EmptyText, RejectReason::MissingId, RejectReason::MissingText]
        );
        // A column of the wrong type is an error for the whole input, naming the column.
        let mut opts2 = opts.clone();
        opts2.fields.is_minor = "message".into();
        let e = rows_from_batch(&b, 1, &opts2).unwrap_err().to_string();
        assert!(e.contains("\"message\"") && e.contains("is_minor"), "{e}");
        opts2 = ReadOptions::default();
        assert!(rows_from_batch(&b, 1, &opts2).unwrap_err().to_string().contains("no id column"));
    }
}
