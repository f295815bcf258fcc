//! The top-level `[output]` table: where `es-connector run` sends messages.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{ConnectorError, Result};
use crate::output::{ElasticsearchOutput, FileOutput, Output, StdoutOutput};

/// Default `workers` of `kind = "elasticsearch"`.
pub const DEFAULT_OUTPUT_WORKERS: usize = 2;

/// `[output]`: `kind = "file"` with `path`, `kind = "stdout"`, or
/// `kind = "elasticsearch"` with `url` and `index`. Default: `stdout`.
#[derive(Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OutputConfig {
    /// JSON lines appended to `path`, fsynced before each acknowledgement.
    File {
        /// The file (created with its parent directories).
        path: PathBuf,
    },
    /// JSON lines on standard output.
    #[default]
    Stdout,
    /// Every message indexed into `index` at `url`, with the source's `_id`.
    Elasticsearch {
        /// Cluster URL; credentials in it are used, never shown. Read by
        /// [`OutputConfig::validate`] into an [`HttpUrl`](super::HttpUrl): this
        /// enum is tagged by `kind`, and serde reads such a variant from a buffer
        /// that would lose the key of an error.
        url: String,
        /// Target index.
        index: String,
        /// Concurrent bulk requests. Default 2.
        #[serde(default = "default_workers")]
        workers: usize,
    },
    /// Every message into the `[[streams]]` topic of an Apache Iggy server.
    #[cfg(feature = "iggy")]
    Iggy(super::IggyOutputConfig),
}

fn default_workers() -> usize {
    DEFAULT_OUTPUT_WORKERS
}

impl fmt::Debug for OutputConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputConfig::File { path } => f.debug_struct("File").field("path", path).finish(),
            OutputConfig::Stdout => f.write_str("Stdout"),
            OutputConfig::Elasticsearch {
                url,
                index,
                workers,
            } => f
                .debug_struct("Elasticsearch")
                .field("url", &state_core::redact_url(url))
                .field("index", index)
                .field("workers", workers)
                .finish(),
            #[cfg(feature = "iggy")]
            OutputConfig::Iggy(c) => c.fmt(f),
        }
    }
}

impl OutputConfig {
    /// Checks every value; errors name the key.
    pub fn validate(&self) -> Result<()> {
        match self {
            OutputConfig::File { path } if path.as_os_str().is_empty() => Err(
                ConnectorError::invalid("output.path", "is empty; name the file to append to"),
            ),
            OutputConfig::Elasticsearch {
                url,
                index,
                workers,
            } => {
                super::HttpUrl::parse(url).map_err(|e| ConnectorError::invalid("output.url", e))?;
                if index.trim().is_empty() {
                    return Err(ConnectorError::invalid("output.index", "is empty"));
                }
                if *workers == 0 {
                    return Err(ConnectorError::invalid(
                        "output.workers",
                        "must be at least 1",
                    ));
                }
                Ok(())
            }
            #[cfg(feature = "iggy")]
            OutputConfig::Iggy(c) => c.validate(),
            _ => Ok(()),
        }
    }

    /// Opens the output this table describes; `streams` are the config's
    /// `[[streams]]` (where an Iggy output sends).
    pub fn open(&self, streams: &[super::StreamConfig]) -> Result<Box<dyn Output>> {
        let _ = streams;
        Ok(match self {
            OutputConfig::File { path } => Box::new(FileOutput::open(path.clone())?),
            OutputConfig::Stdout => Box::new(StdoutOutput),
            OutputConfig::Elasticsearch {
                url,
                index,
                workers,
            } => Box::new(ElasticsearchOutput::new(url, index, *workers)?),
            #[cfg(feature = "iggy")]
            OutputConfig::Iggy(c) => Box::new(crate::iggy::IggyOutput::new(
                c.clone(),
                super::IggyTarget::from_streams(streams)?,
            )),
        })
    }
}
