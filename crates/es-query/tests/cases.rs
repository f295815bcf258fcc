//! Data-driven request tests: every `tests/cases/*.json` file holds a list of cases,
//! each an input configuration, server flavor and call (with its cursor) and the
//! exact request expected (method, path, query, body) or the error expected.
//! All cases run; every mismatch is reported with its file and name.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use es_query::{Cursor, Flavor, PitId, QueryConfig, QueryError, QuerySpec, ScrollId, SearchPage};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    flavor: Flavor,
    config: QueryConfig,
    call: Call,
    /// [`QuerySpec::with_ceiling`], an RFC 3339 instant.
    #[serde(default)]
    ceiling: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    expect: Option<Value>,
    #[serde(default)]
    expect_error: Option<ExpectError>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectError {
    /// `InvalidConfig`, `InvalidCursor`...
    variant: String,
    /// The configuration key, for `InvalidConfig`.
    #[serde(default)]
    key: Option<String>,
    /// A fragment the message must contain.
    #[serde(default)]
    contains: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Call {
    Build,
    SearchAfterPage {
        #[serde(default)]
        cursor: Option<Vec<Value>>,
        #[serde(default)]
        pit: Option<String>,
        #[serde(default)]
        keep_alive: Option<String>,
    },
    OpenPit {
        keep_alive: String,
    },
    ClosePit {
        pit: String,
    },
    ScrollStart {
        #[serde(default)]
        cursor: Option<Vec<Value>>,
        keep_alive: String,
    },
    ScrollNext {
        scroll_id: String,
        keep_alive: String,
    },
    ClearScroll {
        scroll_ids: Vec<String>,
    },
    Count {
        #[serde(default)]
        cursor: Option<Vec<Value>>,
    },
    CursorForNewPit {
        cursor: Vec<Value>,
    },
    /// The page after the last hit of `answer` (a search answer as the server sent it).
    NextPageAfterAnswer {
        answer: Value,
        #[serde(default)]
        pit: Option<String>,
    },
    Sort,
}

fn duration(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or_else(|e| panic!("bad duration {text:?}: {e}"))
}

fn run(case: &Case) -> Result<Value, QueryError> {
    let mut spec: QuerySpec = case.config.clone().build(case.flavor)?;
    if let Some(ceiling) = case.ceiling {
        spec = spec.with_ceiling(ceiling);
    }
    let cursor = |c: &Option<Vec<Value>>| c.clone().map(Cursor::new);
    let request = match &case.call {
        Call::Build => return Ok(Value::Null),
        Call::Sort => return Ok(spec.sort()),
        Call::CursorForNewPit { cursor } => {
            let new = spec.cursor_for_new_pit(&Cursor::new(cursor.clone()));
            return Ok(serde_json::to_value(new).unwrap());
        }
        Call::SearchAfterPage {
            cursor: c,
            pit,
            keep_alive,
        } => {
            let pit = pit.clone().map(PitId::new);
            let keep_alive = duration(keep_alive.as_deref().unwrap_or("1m"));
            spec.search_after_page(cursor(c).as_ref(), pit.as_ref().map(|p| (p, keep_alive)))?
        }
        Call::NextPageAfterAnswer { answer, pit } => {
            let page = SearchPage::parse(answer.to_string().as_bytes())?;
            let pit = pit.clone().map(PitId::new);
            spec.search_after_page(
                page.last_cursor().as_ref(),
                pit.as_ref().map(|p| (p, duration("1m"))),
            )?
        }
        Call::OpenPit { keep_alive } => spec.open_pit(duration(keep_alive))?,
        Call::ClosePit { pit } => spec.close_pit(&PitId::new(pit.clone()))?,
        Call::ScrollStart {
            cursor: c,
            keep_alive,
        } => spec.scroll_start(cursor(c).as_ref(), duration(keep_alive))?,
        Call::ScrollNext {
            scroll_id,
            keep_alive,
        } => spec.scroll_next(&ScrollId::new(scroll_id.clone()), duration(keep_alive))?,
        Call::ClearScroll { scroll_ids } => {
            let ids: Vec<ScrollId> = scroll_ids.iter().cloned().map(ScrollId::new).collect();
            spec.clear_scroll(&ids)
        }
        Call::Count { cursor: c } => spec.count(cursor(c).as_ref())?,
    };
    Ok(serde_json::to_value(request).unwrap())
}

fn variant(error: &QueryError) -> &'static str {
    match error {
        QueryError::InvalidConfig { .. } => "InvalidConfig",
        QueryError::InvalidCursor { .. } => "InvalidCursor",
        QueryError::Malformed { .. } => "Malformed",
        QueryError::TimedOut { .. } => "TimedOut",
        QueryError::ShardFailure { .. } => "ShardFailure",
        QueryError::ContextExpired { .. } => "ContextExpired",
        QueryError::ServerError { .. } => "ServerError",
        _ => "unknown",
    }
}

/// What is wrong with this case's outcome, if anything.
fn check(case: &Case) -> Option<String> {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap();
    match (run(case), &case.expect, &case.expect_error) {
        (Ok(actual), Some(expected), None) if &actual == expected => None,
        (Ok(actual), Some(expected), None) => Some(format!(
            "request differs\n--- expected\n{}\n--- actual\n{}",
            pretty(expected),
            pretty(&actual)
        )),
        (Err(error), None, Some(want)) => {
            let message = error.to_string();
            let key_ok = match (&error, &want.key) {
                (QueryError::InvalidConfig { key, .. }, Some(want_key)) => key == want_key,
                (_, Some(_)) => false,
                (_, None) => true,
            };
            let contains_ok = want.contains.as_ref().is_none_or(|c| message.contains(c));
            if variant(&error) == want.variant && key_ok && contains_ok {
                None
            } else {
                Some(format!(
                    "wrong error: {error:?}\n  message: {message}\n  wanted: {want:?}"
                ))
            }
        }
        (Ok(actual), None, Some(want)) => Some(format!(
            "expected error {want:?}, got a request:\n{}",
            pretty(&actual)
        )),
        (Err(error), Some(_), None) => Some(format!("expected a request, got error: {error}")),
        _ => Some("a case needs exactly one of `expect` and `expect_error`".to_string()),
    }
}

fn case_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_case_builds_the_expected_request() {
    let mut failures = Vec::new();
    let mut count = 0;
    for file in case_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let cases: Vec<Case> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not a list of cases: {e}", file.display()));
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for case in &cases {
            count += 1;
            if let Some(problem) = check(case) {
                failures.push(format!("[{name}] {}: {problem}", case.name));
            }
        }
    }
    assert!(
        count >= 20,
        "only {count} cases found: were case files lost?"
    );
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn case_names_are_unique() {
    let mut names = std::collections::BTreeSet::new();
    for file in case_files() {
        let cases: Vec<Case> =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for case in cases {
            assert!(
                names.insert(case.name.clone()),
                "duplicate case name {}",
                case.name
            );
        }
    }
}
