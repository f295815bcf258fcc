//! A source built from the official `elasticsearch` client (feature `elasticsearch`).

use crate::config::ValidatedConfig;

use super::ElasticsearchSource;

impl ElasticsearchSource {
    /// A source for connector `id` that reads through `client`, the official
    /// client a Rust user of Elasticsearch already holds (its connection pool,
    /// Elastic Cloud id, API key, certificates): `config`'s `url` and
    /// credentials are not used for the source's searches, every other key is.
    /// No IO: [`open`](ElasticsearchSource::open) connects.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use connector::{ElasticsearchSource, PluginConfig};
    /// use elasticsearch::Elasticsearch;
    /// use elasticsearch::http::transport::Transport;
    ///
    /// let client = Elasticsearch::new(Transport::single_node("http://localhost:9200")?);
    /// let config: PluginConfig = toml::from_str(r#"
    ///     url = "http://localhost:9200"
    ///     index = "logs-*"
    ///     tiebreaker_field = "event_id"
    /// "#)?;
    /// let mut source = ElasticsearchSource::with_official_client(1, client, config.validate()?);
    /// source.open().await?;
    /// let batch = source.poll_batch().await?;
    /// # let _ = batch; Ok(()) }
    /// ```
    pub fn with_official_client(
        id: u64,
        client: elasticsearch::Elasticsearch,
        config: ValidatedConfig,
    ) -> Self {
        let mut source = ElasticsearchSource::new(id, config.config().clone());
        source.official = Some(OfficialClient(client));
        source
    }
}

/// The official client, shown by `Debug` without its credentials (its own
/// `Debug` prints them).
#[derive(Clone)]
pub(super) struct OfficialClient(pub(super) elasticsearch::Elasticsearch);

impl std::fmt::Debug for OfficialClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Elasticsearch { .. }")
    }
}
