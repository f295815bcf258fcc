#![doc = include_str!("../README.md")]

mod access;
#[cfg(feature = "reqwest")]
mod client;
mod index;
mod redact;
mod secret;
mod url;

pub use access::{Access, Auth, Endpoint, KeyError};
#[cfg(feature = "reqwest")]
pub use client::uncompressed;
pub use index::IndexName;
pub use redact::{redact_url, strip_userinfo};
pub use secret::Secret;
pub use url::HttpUrl;

/// Why a value was refused: a sentence to put after the key that held it
/// (`state.storage_config.url: ftp://h is not an http:// or https:// URL`).
/// It never contains a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(String);

impl Invalid {
    fn new(reason: impl Into<String>) -> Self {
        Invalid(reason.into())
    }

    /// The reason, as a sentence.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

impl From<Invalid> for String {
    fn from(e: Invalid) -> String {
        e.0
    }
}
