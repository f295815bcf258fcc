//! The configuration dialect of the connector's upstream documentation, read as TOML.
//!
//! The documentation writes tables as `key = {` … `}` over several lines with no
//! commas, and `query = {` with a JSON object inside (`"match_all": {}`). TOML
//! allows neither. [`rewrite`] turns such text into TOML line by line: a block
//! that ends its table section becomes a `[section.key]` table, any other one
//! dotted keys (`state.enabled = true`) so the keys after it stay where they
//! were; a JSON object becomes TOML values with the same meaning. Comments are
//! kept. Pure: no IO, no logging.

use serde_json::Value as Json;

/// Text rewritten from the dialect into TOML.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewritten {
    /// The TOML text, ending in a newline.
    pub text: String,
    /// For each line of `text`, the 1-based line of the input it was made from.
    origins: Vec<usize>,
}

impl Rewritten {
    /// The 1-based input line that 1-based line `line` of [`Rewritten::text`] was made from.
    pub fn origin(&self, line: usize) -> usize {
        let last = self.origins.last().copied().unwrap_or(1);
        line.checked_sub(1)
            .and_then(|i| self.origins.get(i))
            .copied()
            .unwrap_or(last)
    }
}

/// Text that is not the dialect either: the 1-based line and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialectError {
    /// The 1-based line of the input.
    pub line: usize,
    /// What is wrong and how to write it.
    pub reason: String,
}

/// Rewrites the dialect's `key = {` blocks as TOML. `Ok(None)`: the text has no
/// such block, so there is nothing to rewrite (it may still be invalid TOML).
pub fn rewrite(text: &str) -> Result<Option<Rewritten>, DialectError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Out::default();
    let mut section = String::new();
    let mut changed = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            out.push(i, line);
            i += 1;
            continue;
        }
        if t.starts_with('[') {
            section = header_name(t);
            out.push(i, line);
            i += 1;
            continue;
        }
        if t.starts_with('}') {
            return Err(DialectError {
                line: i + 1,
                reason: "`}` closes no `key = {` block".into(),
            });
        }
        let Some((key, rest)) = split_key(t) else {
            out.push(i, line);
            i += 1;
            continue;
        };
        let path = join(&section, key);
        let (entries, close, opener_comment) = match opener(rest) {
            Some(Opener::Toml { comment }) => {
                let (entries, close) = toml_block(&lines, i, &path)?;
                (entries, close, comment)
            }
            Some(Opener::Json { at }) => {
                let (entries, close) = json_block(&lines, i, brace_at(line, rest, at), &path)?;
                (entries, close, None)
            }
            None => {
                // A TOML value, perhaps over several lines: copy it whole, so a
                // line of a multi-line array is never taken for a table header.
                let end = value_end(&lines, i, rest).unwrap_or(lines.len() - 1);
                for (j, line) in lines.iter().enumerate().take(end + 1).skip(i) {
                    out.push(j, *line);
                }
                i = end + 1;
                continue;
            }
        };
        changed = true;
        let whole_value = entries
            .iter()
            .any(|e| matches!(e, Entry::Pair { key, .. } if key.is_empty()));
        let as_table = !whole_value && ends_section(&lines, close + 1);
        out.block(Block {
            line: i,
            key,
            path: &path,
            comment: opener_comment,
            entries,
            as_table,
        });
        i = close + 1;
    }
    if !changed {
        return Ok(None);
    }
    let mut text = out.lines.join("\n");
    text.push('\n');
    Ok(Some(Rewritten {
        text,
        origins: out.origins,
    }))
}

/// One line of a block's body, keys relative to the block; lines are 0-based indices.
#[derive(Debug)]
enum Entry {
    Blank(usize),
    Comment(usize, String),
    /// `key = value`; an empty key is a value for the block itself. `more`: the
    /// value's further lines.
    Pair {
        line: usize,
        key: Vec<String>,
        value: String,
        more: Vec<(usize, String)>,
    },
}

struct Block<'a> {
    line: usize,
    key: &'a str,
    path: &'a str,
    comment: Option<String>,
    entries: Vec<Entry>,
    as_table: bool,
}

#[derive(Default)]
struct Out {
    lines: Vec<String>,
    /// 1-based input line of each output line.
    origins: Vec<usize>,
}

impl Out {
    fn push(&mut self, index: usize, line: impl Into<String>) {
        self.lines.push(line.into());
        self.origins.push(index + 1);
    }

    fn block(&mut self, b: Block<'_>) {
        let comment = b.comment.map(|c| format!("  {c}")).unwrap_or_default();
        let prefix: Vec<String> = if b.as_table {
            if self.lines.last().is_some_and(|l| !l.trim().is_empty()) {
                self.push(b.line, "");
            }
            self.push(b.line, format!("[{}]{comment}", b.path));
            Vec::new()
        } else {
            if !comment.is_empty() {
                self.push(b.line, comment.trim_start());
            }
            if !b.entries.iter().any(|e| matches!(e, Entry::Pair { .. })) {
                self.push(b.line, format!("{} = {{}}", b.key));
            }
            vec![b.key.to_owned()]
        };
        for entry in b.entries {
            match entry {
                Entry::Blank(line) => self.push(line, ""),
                Entry::Comment(line, text) => self.push(line, text),
                Entry::Pair {
                    line,
                    key,
                    value,
                    more,
                } => {
                    let key: Vec<String> = prefix.iter().cloned().chain(key).collect();
                    self.push(line, format!("{} = {value}", key.join(".")));
                    for (line, text) in more {
                        self.push(line, text);
                    }
                }
            }
        }
    }
}

enum Opener {
    /// `key = {` and nothing after but a comment.
    Toml { comment: Option<String> },
    /// `key = {"name": …`: a JSON object starting at byte `at` of the value.
    Json { at: usize },
}

/// What `rest` (the text after `key =`) opens, if it opens a dialect block.
fn opener(rest: &str) -> Option<Opener> {
    let value = rest.trim_start();
    let at = rest.len() - value.len();
    let after = value.strip_prefix('{')?.trim();
    if after.is_empty() {
        return Some(Opener::Toml { comment: None });
    }
    if after.starts_with('#') {
        return Some(Opener::Toml {
            comment: Some(after.to_owned()),
        });
    }
    json_key(after).map(|_| Opener::Json { at })
}

/// The body of a TOML-like block whose `key = {` is on line `open`: its entries
/// and the line of its `}`.
fn toml_block(
    lines: &[&str],
    open: usize,
    path: &str,
) -> Result<(Vec<Entry>, usize), DialectError> {
    let first = (open + 1..lines.len()).find(|&j| {
        let t = lines[j].trim();
        !t.is_empty() && !t.starts_with('#')
    });
    if let Some(j) = first
        && json_key(lines[j].trim()).is_some()
    {
        let line = lines[open];
        let brace = line[..comment_start(line).unwrap_or(line.len())]
            .rfind('{')
            .unwrap_or(0);
        return json_block(lines, open, brace, path);
    }
    let mut entries = Vec::new();
    let mut j = open + 1;
    while j < lines.len() {
        let t = lines[j].trim();
        if t.is_empty() {
            entries.push(Entry::Blank(j));
        } else if t.starts_with('#') {
            entries.push(Entry::Comment(j, t.to_owned()));
        } else if let Some(after) = t.strip_prefix('}') {
            let after = after.trim_start().trim_start_matches(',').trim();
            if after.starts_with('#') {
                entries.push(Entry::Comment(j, after.to_owned()));
            } else if !after.is_empty() {
                return Err(DialectError {
                    line: j + 1,
                    reason: format!(
                        "`{t}`: write nothing after the `}}` that closes `{}` but a comment",
                        last_key(path)
                    ),
                });
            }
            return Ok((entries, j));
        } else if let Some((key, rest)) = split_key(t) {
            let inner = format!("{path}.{key}");
            let nested = match opener(rest) {
                Some(Opener::Toml { comment }) => {
                    let (body, close) = toml_block(lines, j, &inner)?;
                    Some((body, close, comment))
                }
                Some(Opener::Json { at }) => {
                    let (body, close) = json_block(lines, j, brace_at(lines[j], rest, at), &inner)?;
                    Some((body, close, None))
                }
                None => None,
            };
            if let Some((body, close, comment)) = nested {
                let has_pairs = body.iter().any(|e| matches!(e, Entry::Pair { .. }));
                if let Some(comment) = comment {
                    entries.push(Entry::Comment(j, comment));
                }
                if !has_pairs {
                    entries.push(Entry::Pair {
                        line: j,
                        key: vec![key.to_owned()],
                        value: "{}".into(),
                        more: Vec::new(),
                    });
                }
                entries.extend(body.into_iter().map(|e| match e {
                    Entry::Pair {
                        line,
                        key: k,
                        value,
                        more,
                    } => Entry::Pair {
                        line,
                        key: std::iter::once(key.to_owned()).chain(k).collect(),
                        value,
                        more,
                    },
                    other => other,
                }));
                j = close + 1;
                continue;
            }
            let end = value_end(lines, j, rest).ok_or_else(|| DialectError {
                line: j + 1,
                reason: format!(
                    "the value of `{key}` inside `{} = {{` (line {}) is never closed",
                    last_key(path),
                    open + 1
                ),
            })?;
            // Lines of a multi-line string are part of the value: never re-indented.
            let indent = if rest.contains("\"\"\"") || rest.contains("'''") {
                0
            } else {
                lines[j].len() - lines[j].trim_start().len()
            };
            let mut value = rest.trim().to_owned();
            let mut more: Vec<(usize, String)> = (j + 1..=end)
                .map(|k| (k, dedent(lines[k], indent).to_owned()))
                .collect();
            // A comma after a value (the JSON habit) is not needed between lines.
            match more.last_mut() {
                Some((_, last)) => *last = without_trailing_comma(last),
                None => value = without_trailing_comma(&value),
            }
            entries.push(Entry::Pair {
                line: j,
                key: vec![key.to_owned()],
                value,
                more,
            });
            j = end + 1;
            continue;
        } else {
            return Err(DialectError {
                line: j + 1,
                reason: format!(
                    "`{t}` is not `key = value`: inside `{} = {{` (line {}) write one `key = value` per line, or write the block as a `[{path}]` table",
                    last_key(path),
                    open + 1
                ),
            });
        }
        j += 1;
    }
    Err(DialectError {
        line: open + 1,
        reason: format!(
            "`{} = {{` opens a table that is never closed; write it as a `[{path}]` table",
            last_key(path)
        ),
    })
}

/// A JSON object starting at byte `brace` of line `open`: its members as TOML
/// entries (comments kept before them) and the line of its closing `}`.
fn json_block(
    lines: &[&str],
    open: usize,
    brace: usize,
    path: &str,
) -> Result<(Vec<Entry>, usize), DialectError> {
    let mut json = String::new();
    let mut comments = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    for (j, line) in lines.iter().enumerate().skip(open) {
        let start = if j == open { brace } else { 0 };
        let mut chars = line[start..].char_indices();
        let mut escaped = false;
        while let Some((k, c)) = chars.next() {
            if in_string {
                json.push(c);
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '#' => {
                    comments.push(Entry::Comment(j, line[start + k..].trim().to_owned()));
                    break;
                }
                '"' => in_string = true,
                '{' | '[' => depth += 1,
                '}' | ']' => depth = depth.saturating_sub(1),
                _ => {}
            }
            json.push(c);
            if depth == 0 {
                let after = chars.as_str().trim_start().trim_start_matches(',').trim();
                if after.starts_with('#') {
                    comments.push(Entry::Comment(j, after.to_owned()));
                } else if !after.is_empty() {
                    return Err(DialectError {
                        line: j + 1,
                        reason: format!(
                            "write nothing after the `}}` that closes `{} = {{` but a comment",
                            last_key(path)
                        ),
                    });
                }
                let object: serde_json::Map<String, Json> =
                    serde_json::from_str(&json).map_err(|e| DialectError {
                        line: open + e.line().max(1),
                        reason: format!(
                            "the JSON object of `{} = {{` (line {}) does not parse: {e}; write it as JSON that parses, or as a `[{path}]` table",
                            last_key(path),
                            open + 1
                        ),
                    })?;
                comments.extend(json_entries(&object, open));
                return Ok((comments, j));
            }
        }
        json.push('\n');
    }
    Err(DialectError {
        line: open + 1,
        reason: format!(
            "`{} = {{` opens a JSON object that is never closed; close it with `}}`, or write it as a `[{path}]` table",
            last_key(path)
        ),
    })
}

/// A JSON object's members as TOML `key = value` entries; when a value has no
/// TOML form (`null`, an integer beyond i64), the whole object as a JSON string,
/// which `query` reads the same way.
fn json_entries(object: &serde_json::Map<String, Json>, line: usize) -> Vec<Entry> {
    let pairs: Option<Vec<Entry>> = object
        .iter()
        .map(|(k, v)| {
            Some(Entry::Pair {
                line,
                key: vec![toml_key(k)],
                value: json_to_toml(v)?.to_string(),
                more: Vec::new(),
            })
        })
        .collect();
    pairs.unwrap_or_else(|| {
        let json = Json::Object(object.clone()).to_string();
        vec![Entry::Pair {
            line,
            key: Vec::new(),
            value: toml::Value::String(json).to_string(),
            more: Vec::new(),
        }]
    })
}

fn json_to_toml(v: &Json) -> Option<toml::Value> {
    Some(match v {
        Json::Null => return None,
        Json::Bool(b) => toml::Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None if n.is_f64() => toml::Value::Float(n.as_f64()?),
            None => return None,
        },
        Json::String(s) => toml::Value::String(s.clone()),
        Json::Array(items) => {
            toml::Value::Array(items.iter().map(json_to_toml).collect::<Option<_>>()?)
        }
        Json::Object(map) => toml::Value::Table(
            map.iter()
                .map(|(k, v)| Some((k.clone(), json_to_toml(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

/// `k` as a TOML key: bare when it can be, quoted otherwise.
fn toml_key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        k.to_owned()
    } else {
        toml::Value::String(k.to_owned()).to_string()
    }
}

/// The key (as written, quotes kept) and the text after `=` of `key = value`.
fn split_key(t: &str) -> Option<(&str, &str)> {
    let bytes = t.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = closing_quote(t, i, b'"')?,
            b'\'' => i = closing_quote(t, i, b'\'')?,
            b'=' => {
                let key = t[..i].trim();
                return (!key.is_empty()).then(|| (key, &t[i + 1..]));
            }
            c if c.is_ascii_alphanumeric() || b"_-. \t".contains(&c) => {}
            _ => return None,
        }
        i += 1;
    }
    None
}

/// The index of the quote closing the string opened at `start`.
fn closing_quote(t: &str, start: usize, quote: u8) -> Option<usize> {
    let bytes = t.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 1,
            c if c == quote => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// `"name":` at the start of `t`: a JSON member, not TOML.
fn json_key(t: &str) -> Option<&str> {
    if !t.starts_with('"') {
        return None;
    }
    let end = closing_quote(t, 0, b'"')?;
    t[end + 1..]
        .trim_start()
        .starts_with(':')
        .then(|| &t[1..end])
}

/// The line on which the value starting with `rest` on line `start` ends, or
/// `None` when a bracket or a multi-line string is never closed. A value that
/// closes more brackets than it opens on its first line ends there: TOML reports it.
fn value_end(lines: &[&str], start: usize, rest: &str) -> Option<usize> {
    let mut scan = Scan::default();
    scan.line(rest);
    let mut j = start;
    while scan.open() {
        j += 1;
        scan.line(lines.get(j)?);
    }
    // `[` closed by `}`: the value ran into the block's end.
    (!scan.mismatched || j == start).then_some(j)
}

/// Brackets and multi-line strings open at the end of the lines seen so far.
#[derive(Default)]
struct Scan {
    /// The closing brackets expected, innermost last.
    expected: Vec<u8>,
    /// A bracket closed that was not the innermost open one.
    mismatched: bool,
    /// Inside a `"""` or `'''` string.
    multiline: Option<&'static str>,
}

impl Scan {
    fn open(&self) -> bool {
        !self.mismatched && (!self.expected.is_empty() || self.multiline.is_some())
    }

    fn line(&mut self, line: &str) {
        let mut rest = line;
        loop {
            if let Some(close) = self.multiline {
                match find_unescaped(rest, close) {
                    Some(end) => {
                        self.multiline = None;
                        rest = &rest[end + 3..];
                    }
                    None => return,
                }
            }
            let Some(i) = rest.find(['#', '"', '\'', '[', ']', '{', '}']) else {
                return;
            };
            let c = rest.as_bytes()[i];
            let after = &rest[i..];
            match c {
                b'#' => return,
                b'"' | b'\'' => {
                    let triple = if c == b'"' { "\"\"\"" } else { "'''" };
                    if after.starts_with(triple) {
                        self.multiline = Some(triple);
                        rest = &after[3..];
                        continue;
                    }
                    match closing_quote(after, 0, c) {
                        Some(end) => rest = &after[end + 1..],
                        None => return,
                    }
                    continue;
                }
                b'[' => self.expected.push(b']'),
                b'{' => self.expected.push(b'}'),
                _ if self.expected.pop() == Some(c) => {}
                _ => self.mismatched = true,
            }
            rest = &after[1..];
        }
    }
}

/// The first `pattern` in `text` not preceded by a backslash escape (`"""` strings).
fn find_unescaped(text: &str, pattern: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(pattern) {
        let at = from + i;
        let backslashes = text[..at].chars().rev().take_while(|&c| c == '\\').count();
        if pattern == "'''" || backslashes % 2 == 0 {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The byte of `line` where the `{` at byte `at` of `rest` (a suffix of the
/// trimmed `line`) is.
fn brace_at(line: &str, rest: &str, at: usize) -> usize {
    let t = line.trim_end();
    t.len() - rest.trim_end().len() + at
}

/// `line` without up to `indent` leading blanks.
fn dedent(line: &str, indent: usize) -> &str {
    let blanks = line.len() - line.trim_start_matches([' ', '\t']).len();
    &line[blanks.min(indent)..]
}

/// `value` without a `,` ending its TOML part (a comment after it is kept).
fn without_trailing_comma(value: &str) -> String {
    let code_end = comment_start(value).unwrap_or(value.len());
    let code = value[..code_end].trim_end();
    match code.strip_suffix(',') {
        Some(code) => format!("{code}{}", &value[code.len() + 1..]),
        None => value.to_owned(),
    }
}

/// Where a `#` comment starts in `line`, outside strings.
fn comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => return Some(i),
            q @ (b'"' | b'\'') => i = closing_quote(line, i, q)?,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether nothing but blanks and comments follows from line `from` to the next
/// table header or the end: a block there can become a table of its own.
fn ends_section(lines: &[&str], from: usize) -> bool {
    lines
        .iter()
        .skip(from)
        .map(|l| l.trim())
        .take_while(|t| !t.starts_with('['))
        .all(|t| t.is_empty() || t.starts_with('#'))
}

/// The name of `[name]` or `[[name]]`.
fn header_name(t: &str) -> String {
    let inner = t.trim_start_matches('[');
    inner[..inner.find(']').unwrap_or(inner.len())]
        .trim()
        .to_owned()
}

fn join(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_owned()
    } else {
        format!("{section}.{key}")
    }
}

fn last_key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASIC: &str = include_str!("../../tests/fixtures/documented/basic.toml");
    const STATE: &str = include_str!("../../tests/fixtures/documented/state_management.toml");

    fn rewritten(text: &str) -> String {
        match rewrite(text) {
            Ok(Some(r)) => r.text,
            other => panic!("not rewritten: {other:?}\n{text}"),
        }
    }

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn error(text: &str) -> DialectError {
        match rewrite(text) {
            Err(e) => e,
            other => panic!("accepted: {other:?}\n{text}"),
        }
    }

    /// Every comment of `input` is a line (or the end of a line) of `output`.
    fn assert_comments_kept(input: &str, output: &str) {
        for line in input.lines() {
            if let Some(at) = comment_start(line) {
                let comment = line[at..].trim();
                assert!(
                    output.lines().any(|l| l.trim_end().ends_with(comment)),
                    "comment {comment:?} lost:\n{output}"
                );
            }
        }
    }

    #[test]
    fn the_documented_basic_example_becomes_tables() {
        let toml = rewritten(BASIC);
        assert!(toml.ends_with(
            "timestamp_field = \"@timestamp\"\n\n[plugin_config.query]\nmatch_all = {}\n"
        ));
        let hand_written = table(
            "type = \"source\"\nkey = \"elasticsearch\"\nenabled = true\nversion = 0\nname = \"Elasticsearch source\"\npath = \"target/release/libiggy_connector_elasticsearch_source\"\n[[streams]]\nstream = \"elasticsearch_stream\"\ntopic = \"documents\"\nschema = \"json\"\nbatch_length = 100\nlinger_time = \"5ms\"\n[plugin_config]\nurl = \"http://localhost:9200\"\nindex = \"logs-*\"\npolling_interval = \"30s\"\nbatch_size = 100\ntimestamp_field = \"@timestamp\"\n[plugin_config.query.match_all]\n",
        );
        assert_eq!(table(&toml), hand_written);
    }

    #[test]
    fn the_documented_state_block_keeps_values_and_comments() {
        let toml = rewritten(STATE);
        let hand_written = table(
            r#"[plugin_config]
url = "http://localhost:9200"
index = "logs-*"
[plugin_config.state]
enabled = true
storage_type = "file"
state_id = "elasticsearch_logs_connector"
auto_save_interval = "5m"
tracked_fields = ["last_poll_timestamp", "last_document_id", "total_documents_fetched"]
[plugin_config.state.storage_config]
base_path = "./connector_states"
"#,
        );
        assert_eq!(table(&toml), hand_written);
        assert_comments_kept(STATE, &toml);
        assert!(
            toml.contains("\n[plugin_config.state]\nenabled = true\n"),
            "{toml}"
        );
        assert!(
            toml.contains(
                "\nstorage_config.base_path = \"./connector_states\"  # for file storage\n"
            ),
            "{toml}"
        );
    }

    #[test]
    fn a_block_followed_by_keys_becomes_dotted_keys() {
        let text = "[plugin_config]\nquery = {\n  \"term\": {\"level\": \"error\"}\n}\nstate = {  # kept\n  state_id = \"s\",\n  storage_config = {\n    # nothing set\n  }\n}\nbatch_size = 5\n";
        let toml = rewritten(text);
        assert_eq!(
            table(&toml),
            table(
                "[plugin_config]\nquery = { term = { level = \"error\" } }\nstate = { state_id = \"s\", storage_config = {} }\nbatch_size = 5\n"
            )
        );
        assert!(
            toml.contains("\n# kept\n") && toml.contains("\n# nothing set\n"),
            "{toml}"
        );
    }

    #[test]
    fn json_keeps_its_meaning() {
        let json = r#"{"bool": {"filter": [{"range": {"@timestamp": {"gte": "now-1d", "boost": 1.5}}}, {"terms": {"n": [1, -2]}}]}}"#;
        let text = format!(
            "[plugin_config]\nquery = {{\n{}\n}}\n",
            &json[1..json.len() - 1]
        );
        let converted = table(&rewritten(&text));
        let query = serde_json::to_value(&converted["plugin_config"]["query"])
            .unwrap_or_else(|e| panic!("{e}"));
        let expected: Json = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(query, expected);
        // JSON on the opening line, and a null that TOML cannot hold: a JSON string.
        let toml = rewritten("[plugin_config]\nquery = { \"exists\": {\"field\": null}\n}\n");
        assert!(
            toml.contains("query = '{\"exists\":{\"field\":null}}'"),
            "{toml}"
        );
    }

    #[test]
    fn text_without_blocks_is_not_rewritten() {
        assert_eq!(
            rewrite(BASIC.split("query").next().unwrap_or_default()),
            Ok(None)
        );
        assert_eq!(
            rewrite("a = [\n  [1, 2],\n]\nb = {}\nc = 'x {'\n"),
            Ok(None)
        );
    }

    #[test]
    fn errors_name_the_line_and_say_how_to_write_it() {
        let e = error("[plugin_config]\nurl = \"u\"\nstate = {\n  enabled = true\n");
        assert_eq!(e.line, 3);
        assert_eq!(
            e.reason,
            "`state = {` opens a table that is never closed; write it as a `[plugin_config.state]` table"
        );
        let e = error("[plugin_config]\nstate = {\n  enabled true\n}\n");
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("`[plugin_config.state]` table"), "{e:?}");
        let e = error("[plugin_config]\nquery = {\n  \"match_all\": {},\n}\n");
        assert_eq!(e.line, 4, "{e:?}");
        assert!(e.reason.contains("JSON"), "{e:?}");
        assert_eq!(error("a = 1\n}\n").line, 2);
        let e = error("[plugin_config]\nstate = {\n  tracked_fields = [\n    \"poll_count\"\n}\n");
        assert_eq!(e.line, 3, "{e:?}");
    }

    #[test]
    fn origins_map_rewritten_lines_back() {
        let r = rewrite(STATE)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("not rewritten"));
        let line = r
            .text
            .lines()
            .position(|l| l.starts_with("auto_save_interval"))
            .unwrap_or(0);
        assert_eq!(r.origin(line + 1), 14);
    }
}
