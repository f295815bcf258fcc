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

pub use crate::source::fuzzing::look_behind;

/// What the sink (`es-connector sink`) makes of a polled Iggy message.
#[cfg(feature = "iggy")]
pub fn consume(message: &iggy::prelude::IggyMessage) -> crate::iggy::Consumed {
    crate::iggy::input::consumed(message)
}
