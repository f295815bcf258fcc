//! The URL of a cluster, as every `url` key of the configuration takes it.

use std::fmt;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Deserializer};

use super::secret::Secret;

/// An `http://` or `https://` URL, checked when read, its credentials
/// (`https://user:password@host`) split out and percent-decoded. `Debug` and
/// `Display` show it without them ([`HttpUrl::base`]).
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl {
    written: Secret,
    base: String,
    username: Option<String>,
    password: Option<Secret>,
}

impl HttpUrl {
    /// Reads `text`; the error says what is wrong without showing credentials.
    pub fn parse(text: &str) -> Result<Self, String> {
        let not_http = || {
            format!(
                "{} is not an http:// or https:// URL",
                state_core::redact_url(text)
            )
        };
        let mut url = reqwest::Url::parse(text).map_err(|_| not_http())?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(not_http());
        }
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let username = (!url.username().is_empty()).then(|| decode(url.username()));
        let password = url.password().map(|p| Secret::new(decode(p)));
        // Both succeed on an http(s) URL with a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(HttpUrl {
            written: Secret::new(text),
            base: url.as_str().trim_end_matches('/').to_owned(),
            username,
            password,
        })
    }

    /// The URL without credentials and without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The user written in the URL, percent-decoded.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password written in the URL, percent-decoded.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// The URL as written, credentials included: only for a client that takes
    /// them from it.
    pub fn expose(&self) -> &str {
        self.written.expose()
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.base, f)
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

impl PartialEq<&str> for HttpUrl {
    fn eq(&self, other: &&str) -> bool {
        self.written.expose() == *other
    }
}

impl std::str::FromStr for HttpUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        HttpUrl::parse(text)
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HttpUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_split_out_and_decoded() {
        let url =
            HttpUrl::parse("https://el%40stic:p%3Ass@h:9200/x/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.base(), "https://h:9200/x");
        assert_eq!(url.username(), Some("el@stic"));
        assert_eq!(url.password().map(Secret::expose), Some("p:ss"));
        assert_eq!(
            format!("{url} {url:?}"),
            "https://h:9200/x \"https://h:9200/x\""
        );
        let plain = HttpUrl::parse("http://h:9200/a@b").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (plain.username(), plain.base()),
            (None, "http://h:9200/a@b")
        );
    }

    #[test]
    fn only_http_urls_with_a_host_are_taken() {
        for bad in ["ftp://h", "h:9200", "http://", "localhost"] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
        let e = HttpUrl::parse("ftp://u:hunter2@h").map(|_| ()).unwrap_err();
        assert!(
            e.contains("is not an http") && !e.contains("hunter2"),
            "{e}"
        );
    }
}
