//! The source's reading of its own state fields and of the look-behind's
//! histogram answer, without a server; see [`crate::fuzzing`].

use std::time::Duration;

use es_query::TimestampKind;
use state_core::ConnectorState;

use super::{backfill, cursor_millis, late, progress, restore_late};
use crate::error::Result;

/// What opening a source with `slices` slices and a `late_window` (zero: off)
/// makes of a loaded state's own fields (`adopt`), then what its next commit
/// writes back of them: the committed ids' strings and the window pruned at the
/// nearest cursor.
pub(crate) fn adopt(state: &ConnectorState, slices: usize, late_window: Duration) -> Result<()> {
    let cursors = progress::stored_cursors(state, slices)?;
    let seen = progress::stored_seen(state, &cursors)?;
    for s in &seen {
        let _ = s.encode();
    }
    // A backfill record that loads writes back the same.
    if let Some(stored) = backfill::stored(state, slices)? {
        let again = serde_json::from_value::<backfill::Stored>(stored.to_value()).ok();
        assert_eq!(
            again.as_ref(),
            Some(&stored),
            "a loaded backfill record must load again, unchanged"
        );
    }
    if let Some(mut window) = restore_late(late_window, state)? {
        let horizon = cursors
            .iter()
            .map(|c| cursor_millis(TimestampKind::Date, c.as_ref()?))
            .collect::<Option<Vec<i64>>>()
            .and_then(|all| all.into_iter().min());
        if let Some(horizon) = horizon {
            window.prune(horizon);
        }
        let _ = window.to_value();
    }
    Ok(())
}

/// What `late_window`'s look behind cursors at `nearest_ms` and `furthest_ms`
/// makes of an answer to its histogram: the time ranges it reads again.
pub fn look_behind(
    late_window: Duration,
    nearest_ms: i64,
    furthest_ms: i64,
    status: u16,
    body: &[u8],
) -> es_query::Result<Vec<(i64, i64)>> {
    let window = late::LateWindow::new(late_window);
    let range = window.range(nearest_ms, furthest_ms);
    let counts = es_query::parse_bucket_counts(status, body)?;
    Ok(window.changed(&counts, range.from, range.until))
}
