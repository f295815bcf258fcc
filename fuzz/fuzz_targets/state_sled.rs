//! A value of the sled store (`state-sled`): the 21-byte header, then the
//! document; loaded and listed under the key `elasticsearch_source_1`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use state_core::StateId;

fuzz_target!(|value: &[u8]| {
    let key = "elasticsearch_source_1";
    let Ok(id) = StateId::new(key) else {
        return;
    };
    match state_sled::fuzzing::load(&id, value) {
        Ok(stored) => assert!(stored.size_bytes <= value.len() as u64),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Some(Err(e)) = state_sled::fuzzing::list_entry(key.as_bytes(), value) {
        assert!(!e.to_string().is_empty());
    }
});
