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
    /// A field the engine reads appears twice in one JSON object (the field's name). Which one
    /// a reader takes differs between JSON libraries, so the row is not trusted at all.
    DuplicateKey(&'static str),
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
            RejectReason::DuplicateKey(f) => format!("duplicate_key:{f}"),
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

impl FieldMap {
    /// `(field, key)` for every field, in the order of the input schema.
    pub fn fields(&self) -> [(&'static str, &str); 11] {
        [
            ("id", &self.id),
            ("text", &self.text),
            ("user_id", &self.user_id),
            ("conversation_id", &self.conversation_id),
            ("turn", &self.turn),
            ("role", &self.role),
            ("region", &self.region),
            ("consent_ads", &self.consent_ads),
            ("is_minor", &self.is_minor),
            ("account_linked", &self.account_linked),
            ("ts", &self.ts),
        ]
    }
}

/// A JSON line's top level: an object's members in order, duplicates kept (serde_json's own
/// map keeps only the last of a repeated key), or anything else.
enum TopLevel {
    Object(Vec<(String, Value)>),
    Other,
}

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TopLevel;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<TopLevel, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    pairs.push((k, v));
                }
                Ok(TopLevel::Object(pairs))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<TopLevel, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(TopLevel::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }
            fn visit_unit<E>(self) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }
        }
        d.deserialize_any(V)
    }
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

/// The default limit on a turn's text: longer texts are rejected as `too_long` (the CLI's
/// `--max-bytes`, the Python module's `max_text_bytes`).
pub const DEFAULT_MAX_TEXT_BYTES: usize = 100_000;

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { fields: FieldMap::default(), max_text_bytes: DEFAULT_MAX_TEXT_BYTES }
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
        Some(Value::Number(n)) if n.is_u64() => {
            Some(n.as_i64().ok_or(RejectReason::BadValue("turn"))?)
        }
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

/// Parses one JSONL line (without its line terminator) into a row, with the default limit on
/// the text's length ([`DEFAULT_MAX_TEXT_BYTES`]).
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
    let (v, dups) = match serde_json::from_slice::<TopLevel>(bytes) {
        Ok(TopLevel::Object(pairs)) => {
            let mut dups: Vec<String> = Vec::new();
            let mut map = serde_json::Map::with_capacity(pairs.len());
            for (k, val) in pairs {
                if map.contains_key(&k) {
                    dups.push(k);
                } else {
                    map.insert(k, val);
                }
            }
            (Value::Object(map), dups)
        }
        Ok(TopLevel::Other) => return reject(None, RejectReason::NotObject),
        Err(_) => return reject(None, RejectReason::BadJson),
    };
    if let Some(field) = f.fields().into_iter().find(|(_, key)| dups.iter().any(|d| d == *key)) {
        let id = if field.0 == "id" { None } else { id_of(&v, &f.id).ok().flatten() };
        return reject(id, RejectReason::DuplicateKey(field.0));
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
            if self.line == 1 {
                // A UTF-8 byte order mark (as some Windows tools write) is not part of the row.
                l = l.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(l);
            }
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

std::thread_local! {
    static QUIET_PANIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
static QUIET_HOOK: std::sync::Once = std::sync::Once::new();

/// Runs a third-party decoder (the Parquet and Arrow IPC readers) on untrusted bytes: a panic
/// inside it becomes [`crate::Error::Invalid`] naming `what`, and the panic message is not
/// printed. Fuzzing found inputs on which those readers panic (a buffer offset past its end, a
/// bitmap range out of bounds) instead of returning an error; a damaged file must be an error
/// that names the file, never a crash. The decoder must not be used again after such an error.
///
/// # Errors
/// [`crate::Error::Invalid`] when `f` panics.
pub fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> crate::Result<T> {
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET_PANIC.with(|q| q.get()) {
                previous(info)
            }
        }));
    });
    let was = QUIET_PANIC.with(|q| q.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANIC.with(|q| q.set(was));
    r.map_err(|_| {
        crate::Error::Invalid(format!(
            "{what}: the decoder failed on damaged data (file corrupted?)"
        ))
    })
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
    // A column name given twice: readers disagree on which one counts (as with a JSON key
    // given twice), so the input is refused as a whole.
    for (field, key) in f.fields() {
        if batch.schema().fields().iter().filter(|c| c.name() == key).count() > 1 {
            return Err(crate::Error::Invalid(format!(
                "column {key:?} ({field}) appears more than once in the input"
            )));
        }
    }
    let bad = |field: &str, col: &str, t: &DataType| {
        crate::Error::Invalid(format!(
            "column {col:?} ({field}) has type {t}, which cannot hold it"
        ))
    };
    // Each column becomes a closure row -> Option<String> (or bool / i64).
    type Getter<'a, T> = Box<dyn Fn(usize) -> Option<T> + 'a>;
    // Every string-like column is read through one `Utf8` view: dictionary-encoded strings and
    // (where the field allows it) integer columns of any width are cast first; a column of the
    // Null type reads as absent in every row.
    let string_col =
        |field: &str, col: &str, ints: bool| -> crate::Result<Option<Getter<'_, String>>> {
            let Some(a) = batch.column_by_name(col) else { return Ok(None) };
            let t = a.data_type();
            let stringy = |t: &DataType| {
                matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            };
            let ok = match t {
                DataType::Null => return Ok(Some(Box::new(|_| None))),
                DataType::Dictionary(_, v) => stringy(v) || (ints && v.is_integer()),
                t => stringy(t) || (ints && t.is_integer()),
            };
            if !ok {
                return Err(bad(field, col, t));
            }
            let c = if *t == DataType::Utf8 {
                a.clone()
            } else {
                arrow_cast::cast(a, &DataType::Utf8).map_err(|_| bad(field, col, t))?
            };
            let c = c.as_string::<i32>().clone();
            Ok(Some(Box::new(move |i| c.is_valid(i).then(|| c.value(i).to_string()))))
        };
    let bool_col = |field: &str, col: &str| -> crate::Result<Option<Getter<'_, bool>>> {
        let Some(a) = batch.column_by_name(col) else { return Ok(None) };
        match a.data_type() {
            DataType::Boolean => {
                let a = a.as_boolean();
                Ok(Some(Box::new(move |i| a.is_valid(i).then(|| a.value(i)))))
            }
            DataType::Null => Ok(Some(Box::new(|_| None))),
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
    // `turn` as i64; a value that does not fit (a UInt64 over i64::MAX) rejects its row as
    // `bad_value:turn`, as in JSON lines, instead of becoming null.
    type TurnGetter<'a> = Box<dyn Fn(usize) -> Result<Option<i64>, RejectReason> + 'a>;
    let turn: Option<TurnGetter<'_>> = match batch.column_by_name(&f.turn) {
        None => None,
        Some(a) if *a.data_type() == DataType::Null => Some(Box::new(|_| Ok(None))),
        Some(a) => match arrow_cast::cast(a, &DataType::Int64) {
            Ok(c) if a.data_type().is_integer() => {
                let c = c.as_primitive::<arrow_array::types::Int64Type>().clone();
                let orig = a.clone();
                Some(Box::new(move |i| match (orig.is_valid(i), c.is_valid(i)) {
                    (false, _) => Ok(None),
                    (true, true) => Ok(Some(c.value(i))),
                    (true, false) => Err(RejectReason::BadValue("turn")),
                }))
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
        let turn_no = match turn.as_ref().map_or(Ok(None), |g| g(i)) {
            Ok(t) => t,
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
                turn: turn_no,
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
    fn a_field_given_twice_rejects_the_row() {
        for (line, field) in [
            (&br#"{"id":"x","text":"a","region":"DE","region":"US"}"#[..], "region"),
            (br#"{"id":"x","text":"a","is_minor":true,"is_minor":false}"#, "is_minor"),
            (br#"{"id":"x","text":"a","text":"b"}"#, "text"),
            (br#"{"id":"x","id":"y","text":"a"}"#, "id"),
        ] {
            let rej = parse_line(line, 1).turn.unwrap_err();
            assert_eq!(rej.reason.code(), format!("duplicate_key:{field}"));
            // The id is kept for tracing unless it is the key given twice.
            assert_eq!(rej.id.is_some(), field != "id");
        }
        // A repeated key the engine does not read changes nothing.
        assert!(parse_line(br#"{"id":"x","text":"a","extra":1,"extra":2}"#, 1).turn.is_ok());
        // With a mapping, the mapped key is the one that counts.
        let mut o = ReadOptions::default();
        o.fields.region = "country".into();
        let l = br#"{"id":"x","text":"a","country":"DE","country":"US"}"#;
        assert_eq!(
            parse_line_with(l, 1, &o).turn.unwrap_err().reason,
            RejectReason::DuplicateKey("region")
        );
    }

    #[test]
    fn turn_past_i64_is_a_bad_value() {
        assert_eq!(
            reason(br#"{"id":"x","text":"a","turn":18446744073709551615}"#),
            Some(RejectReason::BadValue("turn"))
        );
        assert_eq!(reason(br#"{"id":"x","text":"a","turn":9223372036854775807}"#), None);
    }

    #[test]
    fn a_byte_order_mark_before_the_first_row_is_not_part_of_it() {
        let data = b"\xEF\xBB\xBF{\"id\":\"1\",\"text\":\"a\"}\n\xEF\xBB\xBF{\"id\":\"2\",\"text\":\"b\"}\n";
        let rows = JsonlReader::new(&data[..]).next_chunk(10).unwrap();
        assert!(rows[0].turn.is_ok(), "{:?}", rows[0]);
        // Only the start of the input may carry one.
        assert_eq!(rows[1].turn.as_ref().unwrap_err().reason, RejectReason::BadJson);
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

    #[test]
    fn dictionary_null_and_other_integer_columns_are_read() {
        use arrow_array::types::Int32Type;
        use arrow_array::{DictionaryArray, Int16Array, NullArray, UInt64Array};
        let text: DictionaryArray<Int32Type> =
            vec![Some("hello"), Some("hello"), Some("bye")].into_iter().collect();
        let b = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(UInt64Array::from(vec![1, u64::MAX, 3])) as ArrayRef),
            ("text", Arc::new(text) as ArrayRef),
            ("user_id", Arc::new(Int16Array::from(vec![-7, 8, 9])) as ArrayRef),
            ("region", Arc::new(NullArray::new(3)) as ArrayRef),
            ("consent_ads", Arc::new(NullArray::new(3)) as ArrayRef),
            ("turn", Arc::new(UInt64Array::from(vec![Some(1), None, Some(u64::MAX)])) as ArrayRef),
        ])
        .unwrap();
        let rows = rows_from_batch(&b, 1, &ReadOptions::default()).unwrap();
        let t = rows[0].turn.as_ref().unwrap();
        assert_eq!(
            (t.id.as_str(), t.text.as_str(), t.user_id.as_deref(), t.region.as_deref(), t.turn),
            ("1", "hello", Some("-7"), None, Some(1))
        );
        assert_eq!(rows[1].turn.as_ref().unwrap().id, u64::MAX.to_string());
        assert_eq!(rows[1].turn.as_ref().unwrap().turn, None);
        // A turn number past i64 rejects its row, as in JSON lines.
        let rej = rows[2].turn.as_ref().unwrap_err();
        assert_eq!((rej.reason.code(), rej.id.as_deref()), ("bad_value:turn".into(), Some("3")));
    }

    #[test]
    fn a_column_given_twice_refuses_the_input() {
        use arrow_schema::{DataType, Field, Schema};
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("text", DataType::Utf8, true),
            Field::new("region", DataType::Utf8, true),
            Field::new("region", DataType::Utf8, true),
        ]);
        let col = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
        let b =
            RecordBatch::try_new(Arc::new(schema), vec![col("1"), col("hi"), col("US"), col("DE")])
                .unwrap();
        let e = rows_from_batch(&b, 1, &ReadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("\"region\"") && e.contains("more than once"), "{e}");
    }
}
