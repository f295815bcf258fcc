//! A state file of the file store (`state-file`): its bytes loaded as the state
//! its name says, and listed. The first line of the input is the file name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use state_core::StateId;

fuzz_target!(|data: &[u8]| {
    let (name, bytes) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b"elasticsearch_source_1.json"[..], data),
    };
    let Ok(name) = std::str::from_utf8(name) else {
        return;
    };
    if let Some(listed) = state_file::fuzzing::list_entry(name, bytes)
        && let Err(e) = listed
    {
        assert!(!e.to_string().is_empty());
    }
    let stem = name.strip_suffix(".json").unwrap_or(name);
    if let Ok(id) = StateId::new(stem) {
        match state_file::fuzzing::load(&id, bytes) {
            Ok(state) => assert_eq!(state.id, id.as_str(), "a file loads as its own id only"),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
});
