//! The Elasticsearch store's (`state-es`) reading of the server: the answer to
//! its GET of a state document (the stored envelope and the state inside), and
//! a page of its listing search; each as a 200 and as a 404.
#![no_main]

use libfuzzer_sys::fuzz_target;
use state_core::StateId;

fuzz_target!(|body: &[u8]| {
    let Ok(id) = StateId::new("elasticsearch_source_1") else {
        return;
    };
    for status in [200, 404] {
        match state_es::fuzzing::load_reply(&id, status, body) {
            Some(Ok(stored)) => assert_eq!(stored.state.id, id.as_str()),
            Some(Err(e)) => assert!(!e.to_string().is_empty()),
            None => {}
        }
        if let Some(Err(e)) = state_es::fuzzing::list_reply(status, body) {
            assert!(!e.to_string().is_empty());
        }
    }
});
