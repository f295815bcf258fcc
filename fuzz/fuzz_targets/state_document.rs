//! A stored state document (`state-core`'s decoding, as every store loads it,
//! and an import's), then the source's own fields in it (cursors, ids seen at
//! the cursor, the late window) as a source opening it reads them. A document
//! that loads must save into one that loads again.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use state_core::{ConnectorState, StateError};

fn explained(e: &StateError) {
    assert!(!e.to_string().is_empty());
}

fuzz_target!(|bytes: &[u8]| {
    match ConnectorState::from_slice(bytes, "fuzz", "fuzz input") {
        Ok(state) => {
            for saved in [state.to_json(), state.to_pretty_json()] {
                let again =
                    ConnectorState::from_slice(&saved, "fuzz", "saved").unwrap_or_else(|e| {
                        panic!("a loaded state saves into one that does not load: {e}")
                    });
                assert_eq!(again.id, state.id);
                assert_eq!(again.last_updated, state.last_updated);
            }
            for (slices, window) in [(1, 0), (1, 600), (2, 3_600)] {
                if let Err(e) =
                    connector::fuzzing::adopt_state(&state, slices, Duration::from_secs(window))
                {
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        Err(e) => explained(&e),
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        if let Err(e) = ConnectorState::from_value(value, "import") {
            explained(&e);
        }
    }
});
