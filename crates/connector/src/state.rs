//! Wiring the configured state backend: the only place that knows them all.

use std::sync::Arc;

use state_core::{StateConfig, StateError, StateManager, StateStore, StorageSettings};

use crate::config::{PluginConfig, ValidatedConfig};
use crate::error::{ConnectorError, Result};
use crate::metrics::{MeteredStore, MetricsSlot};

/// Opens the store a validated `storage_config` describes.
///
/// A backend whose cargo feature (`state-file`, `state-sled`, `state-redis`,
/// `state-es`) is off is refused with an error naming the feature.
pub async fn open_store(settings: &StorageSettings) -> Result<Arc<dyn StateStore>, StateError> {
    match settings {
        #[cfg(feature = "state-file")]
        StorageSettings::File { base_path } => {
            Ok(Arc::new(state_file::FileStore::new(base_path.clone())?))
        }
        #[cfg(feature = "state-sled")]
        StorageSettings::Sled { path } => Ok(Arc::new(state_sled::SledStore::open(path.clone())?)),
        #[cfg(feature = "state-redis")]
        StorageSettings::Redis { url, key_prefix } => Ok(Arc::new(
            state_redis::RedisStore::connect(url, key_prefix.clone()).await?,
        )),
        #[cfg(feature = "state-es")]
        StorageSettings::Elasticsearch { endpoint, index } => Ok(Arc::new(
            state_es::EsStoreBuilder::from_endpoint(endpoint.clone())
                .with_index(index.as_str())
                .build()
                .await?,
        )),
        #[allow(unreachable_patterns)]
        other => Err(StateError::invalid_config(
            "state.storage_type",
            format!(
                "{other:?} support is not compiled into this build; enable the connector's `{}` feature",
                feature_of(other)
            ),
        )),
    }
}

#[allow(dead_code)]
fn feature_of(settings: &StorageSettings) -> &'static str {
    match settings {
        StorageSettings::File { .. } => "state-file",
        StorageSettings::Sled { .. } => "state-sled",
        StorageSettings::Redis { .. } => "state-redis",
        StorageSettings::Elasticsearch { .. } => "state-es",
    }
}

/// The state manager of a `[plugin_config]`, or `None` when state is disabled.
pub async fn open_manager(config: &ValidatedConfig) -> Result<Option<StateManager>> {
    open_manager_reporting(config, None).await
}

/// [`open_manager`], its store's loads and saves recorded in the metrics that
/// `slot` holds at the time of each (see [`MeteredStore`]).
pub async fn open_manager_reporting(
    config: &ValidatedConfig,
    slot: Option<&MetricsSlot>,
) -> Result<Option<StateManager>> {
    let (Some(state), Some(settings)) = (&config.state, config.state_settings()) else {
        return Ok(None);
    };
    let mut store = open_store(settings).await?;
    if let Some(slot) = slot {
        store = Arc::new(MeteredStore::new(store, slot.clone()));
    }
    Ok(Some(StateManager::from_config(store, state)?))
}

/// The `state` block, or an error saying state management is off.
pub fn require_state(config: &PluginConfig) -> Result<&StateConfig> {
    match &config.state {
        Some(state) if state.enabled => Ok(state),
        _ => Err(ConnectorError::invalid(
            "plugin_config.state",
            "state management is not enabled in this configuration; add a [plugin_config.state] table with enabled = true",
        )),
    }
}
