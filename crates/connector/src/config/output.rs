//! The top-level `[output]` table: where `es-connector run` sends messages.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::{Access, Endpoint, HttpUrl, Secret};
use crate::error::{ConnectorError, Result};
use crate::output::{
    ElasticsearchOutput, ElasticsearchOutputOptions, FileOutput, Output, StdoutOutput,
};

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
        /// [`OutputConfig::elasticsearch_endpoint`] into an [`HttpUrl`], whose
        /// error names `output.url`: this enum is tagged by `kind`, and serde
        /// reads such a variant from a buffer that would lose the key of an error.
        url: String,
        /// Target index.
        index: String,
        /// Concurrent bulk requests. Default 2.
        #[serde(default = "default_workers")]
        workers: usize,
        /// Lower the concurrent bulk requests when the cluster answers 429,
        /// and raise them again up to `workers` as it recovers. Default off.
        #[serde(default)]
        adaptive_concurrency: bool,
        /// API key (`Authorization: ApiKey ...`, the base64 `id:key`). Never printed.
        #[serde(default)]
        api_key: Option<Secret>,
        /// Basic authentication user.
        #[serde(default)]
        username: Option<String>,
        /// Basic authentication password. Never printed.
        #[serde(default)]
        password: Option<Secret>,
        /// PEM file of CA certificates to trust for `https://`, on top of the
        /// root set built in.
        #[serde(default)]
        ca_file: Option<PathBuf>,
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
                adaptive_concurrency,
                api_key,
                username,
                password,
                ca_file,
            } => f
                .debug_struct("Elasticsearch")
                .field("url", &state_core::redact_url(url))
                .field("index", index)
                .field("workers", workers)
                .field("adaptive_concurrency", adaptive_concurrency)
                .field("api_key", api_key)
                .field("username", username)
                .field("password", password)
                .field("ca_file", ca_file)
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
                index,
                workers,
                adaptive_concurrency,
                ..
            } => {
                self.elasticsearch_endpoint()?;
                if index.trim().is_empty() {
                    return Err(ConnectorError::invalid("output.index", "is empty"));
                }
                if *workers == 0 {
                    return Err(ConnectorError::invalid(
                        "output.workers",
                        "must be at least 1",
                    ));
                }
                if *adaptive_concurrency && *workers < 2 {
                    return Err(ConnectorError::invalid(
                        "output.adaptive_concurrency",
                        format!(
                            "has nothing to adapt with workers = {workers}: set workers to the \
                             most concurrent bulk requests the cluster may get (at least 2)"
                        ),
                    ));
                }
                Ok(())
            }
            #[cfg(feature = "iggy")]
            OutputConfig::Iggy(c) => c.validate(),
            _ => Ok(()),
        }
    }

    /// `kind = "elasticsearch"`: `url` and the access keys resolved into one
    /// cluster (errors name the key); `None` for another kind.
    pub fn elasticsearch_endpoint(&self) -> Result<Option<Endpoint>> {
        let OutputConfig::Elasticsearch {
            url,
            api_key,
            username,
            password,
            ca_file,
            ..
        } = self
        else {
            return Ok(None);
        };
        let url = HttpUrl::parse(url).map_err(|e| ConnectorError::invalid("output.url", e))?;
        let access = Access {
            api_key: api_key.clone(),
            username: username.clone(),
            password: password.clone(),
            ca_file: ca_file.clone(),
        };
        Endpoint::new(url, access)
            .map(Some)
            .map_err(|e| ConnectorError::invalid(format!("output.{}", e.key), e.reason))
    }

    /// `kind = "elasticsearch"`: the cluster, the index and how the output
    /// sends (`workers`, `adaptive_concurrency`); `None` for another kind.
    pub fn elasticsearch_target(
        &self,
    ) -> Result<Option<(Endpoint, &str, ElasticsearchOutputOptions)>> {
        let (
            OutputConfig::Elasticsearch {
                index,
                workers,
                adaptive_concurrency,
                ..
            },
            Some(endpoint),
        ) = (self, self.elasticsearch_endpoint()?)
        else {
            return Ok(None);
        };
        let options = ElasticsearchOutputOptions {
            workers: *workers,
            adaptive: *adaptive_concurrency,
            ..ElasticsearchOutputOptions::default()
        };
        Ok(Some((endpoint, index.as_str(), options)))
    }

    /// Reads the CA file an `elasticsearch` output names, if any (IO): see
    /// [`check_ca_file`](super::check_ca_file).
    pub fn check_files(&self) -> Result<()> {
        match self.elasticsearch_endpoint()? {
            Some(endpoint) => super::check_ca_file(&endpoint, "output"),
            None => Ok(()),
        }
    }

    /// Opens the output this table describes; `streams` are the config's
    /// `[[streams]]` (where an Iggy output sends).
    pub fn open(&self, streams: &[super::StreamConfig]) -> Result<Box<dyn Output>> {
        let _ = streams;
        Ok(match self {
            OutputConfig::File { path } => Box::new(FileOutput::open(path.clone())?),
            OutputConfig::Stdout => Box::new(StdoutOutput),
            OutputConfig::Elasticsearch { .. } => {
                let (endpoint, index, options) = self.elasticsearch_target()?.ok_or_else(|| {
                    ConnectorError::invalid("output.kind", "is not \"elasticsearch\"")
                })?;
                Box::new(ElasticsearchOutput::with_options(
                    &endpoint, index, options,
                )?)
            }
            #[cfg(feature = "iggy")]
            OutputConfig::Iggy(c) => Box::new(crate::iggy::IggyOutput::new(
                c.clone(),
                super::IggyTarget::from_streams(streams)?,
            )),
        })
    }
}
