//! The Apache Iggy connectors-runtime plugin that indexes consumed JSON messages
//! into Elasticsearch/OpenSearch through the [`bulk`] processor.
//!
//! Each message becomes one `index` action into `plugin_config.index`, with `_id`
//! from the `es_id` header (messages of the Elasticsearch source) or else the
//! message id in 32 hex digits: redelivering a message rewrites the same document.
//! A consume call returns once every document of the batch is indexed or refused
//! for good: while Elasticsearch is unavailable (or refuses requests as a whole)
//! the call holds the batch and sends it again, since the runtime has already
//! committed its offsets. A document refused for good is logged with its id and error and then written to
//! `dead_letter_path` when one is configured; without one the call fails, naming
//! the first such document.

// The SDK's `sink_connector!` exports `extern "C"` functions with `#[unsafe(no_mangle)]`,
// which is why this crate, unlike the library crates, does not deny `unsafe_code`.

pub mod config;
pub mod dead_letter;
pub mod document;
mod plugin;

pub use config::SinkConfig;
pub use plugin::ElasticsearchSinkPlugin;

iggy_connector_sdk::sink_connector!(ElasticsearchSinkPlugin);
