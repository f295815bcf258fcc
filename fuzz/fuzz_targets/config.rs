//! Connector configuration text: the source's (`[plugin_config]`, `[output]`,
//! streams; `PluginConfig::validate` inside `from_toml`), the sink's, and the
//! documentation's TOML dialect (`config/dialect.rs`), which `to_valid_toml`
//! rewrites into TOML.
#![no_main]

use connector::ConnectorConfig;
use connector::config::{dialect, to_valid_toml};
use connector::sink::SinkConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ConnectorConfig::from_toml(text) {
        Ok(config) => {
            // What every later step works from.
            let validated = config
                .plugin_config
                .validate()
                .unwrap_or_else(|e| panic!("from_toml accepted what validate refuses: {e}"));
            let _ = validated.query().to_string();
            let _ = format!("{config:?}");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Err(e) = SinkConfig::from_toml(text) {
        assert!(!e.to_string().is_empty());
    }
    let lines = text.lines().count().max(1);
    match to_valid_toml(text, "fuzz.toml") {
        Ok(Some(toml)) => {
            assert!(
                toml.parse::<toml::Table>().is_ok(),
                "the dialect was rewritten into text that is not TOML:\n{toml}"
            );
        }
        Ok(None) => {}
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match dialect::rewrite(text) {
        Ok(Some(rewritten)) => {
            for line in 1..=rewritten.text.lines().count() {
                let origin = rewritten.origin(line);
                assert!(
                    (1..=lines).contains(&origin),
                    "line {line} comes from input line {origin} of {lines}"
                );
            }
        }
        Ok(None) => {}
        Err(e) => assert!(
            (1..=lines).contains(&e.line) && !e.reason.is_empty(),
            "{e:?} ({lines} lines)"
        ),
    }
});
