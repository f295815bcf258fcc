//! The Apache Iggy connectors-runtime plugin for the Elasticsearch/OpenSearch source.
//!
//! A thin adapter: [`connector::ElasticsearchSource`] reads (search_after in a point in
//! time, scroll, slices, state backends), this crate maps its batches to the SDK's
//! [`iggy_connector_sdk::ProducedMessages`] and its acknowledgement watermark to the
//! SDK's batch results ([`iggy_connector_sdk::Source::on_batch_result`]).
//!
//! Who owns the cursor ([`owner::CursorOwner`]):
//!
//! | `plugin_config.state` | owner | `poll` returns `state` | the cursor moves |
//! |---|---|---|---|
//! | enabled | the configured store (file, sled, redis, elasticsearch) | always `None` | in `on_batch_result(Ack)`, saved to the store |
//! | absent or `enabled = false` | the runtime's state file | the whole state document after the batch | when the runtime saved it (it acks only then) |
//!
//! A `Nack` puts the source back at the last acknowledged cursor: the batch is read
//! again (at-least-once). See `docs/plugins.md`.

// The SDK's `source_connector!` exports `extern "C"` functions with `#[unsafe(no_mangle)]`,
// which is why this crate, unlike the library crates, does not deny `unsafe_code`.

mod messages;
pub mod owner;
mod plugin;

pub use messages::to_produced;
pub use plugin::{CONNECTOR_NAME, ElasticsearchSourcePlugin};

iggy_connector_sdk::source_connector!(ElasticsearchSourcePlugin);
