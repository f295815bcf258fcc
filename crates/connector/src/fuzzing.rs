//! Internal readers of outside input, reachable for the fuzz targets (`fuzz/`)
//! exactly as the connector calls them. Not a public API (feature `fuzzing`).

use std::time::Duration;

use state_core::ConnectorState;

use crate::error::Result;

/// What opening a source with `slices` slices and a `late_window` (zero: off)
/// makes of a loaded state's own fields (cursors, ids seen at the cursor, the
/// late window), and what its next commit writes back of them.
pub fn adopt_state(state: &ConnectorState, slices: usize, late_window: Duration) -> Result<()> {
    crate::source::fuzzing::adopt(state, slices, late_window)
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
    crate::source::fuzzing::look_behind(late_window, nearest_ms, furthest_ms, status, body)
}

/// What the sink (`es-connector sink`) makes of a polled Iggy message.
#[cfg(feature = "iggy")]
pub fn consume(message: &iggy::prelude::IggyMessage) -> crate::iggy::Consumed {
    crate::iggy::input::consumed(message)
}
