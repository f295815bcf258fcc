//! The URL of a cluster, as every `url` key of the configuration takes it.

use std::fmt;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Deserializer};

use crate::{Invalid, Secret, redact_url};

/// An `http://` or `https://` URL with a host and no query or fragment, checked
/// when read, its credentials (`https://user:password@host`) split out and
/// percent-decoded. `Debug` and `Display` show it without them ([`HttpUrl::base`]).
/// A path is kept: `https://proxy/es` reaches `https://proxy/es/_bulk`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl {
    written: Secret,
    base: String,
    username: Option<String>,
    password: Option<Secret>,
}

impl HttpUrl {
    /// Reads `text`; the error says what is wrong without showing credentials.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let shown = redact_url(text);
        let refuse = |why: &str| Invalid::new(format!("{shown} {why}"));
        let mut url = url::Url::parse(text).map_err(|e| {
            refuse(&format!(
                "is not an http:// or https:// URL ({e}); write e.g. http://localhost:9200"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refuse(
                "is not an http:// or https:// URL; write e.g. http://localhost:9200",
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(refuse("has no host; write e.g. http://localhost:9200"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(refuse(
                "has a query or fragment; give only scheme, host, port and an optional path prefix",
            ));
        }
        let decode = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|d| d.into_owned())
                .map_err(|_| refuse("has credentials that are not UTF-8 once percent-decoded"))
        };
        let username = match url.username() {
            "" => None,
            user => Some(decode(user)?),
        };
        let password = url.password().map(decode).transpose()?.map(Secret::new);
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

    /// Whether the URL carries a user or a password.
    pub fn has_credentials(&self) -> bool {
        self.username.is_some() || self.password.is_some()
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
    type Err = Invalid;

    fn from_str(text: &str) -> Result<Self, Invalid> {
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
    fn percent_escapes_of_credentials_are_decoded_strictly() {
        for (password, decoded) in [
            ("p%40ss%3Aw%C3%B6rd", "p@ss:wörd"),
            ("100%", "100%"),
            ("%zz", "%zz"),
        ] {
            let url = HttpUrl::parse(&format!("http://u:{password}@h:9200"))
                .unwrap_or_else(|e| panic!("{password}: {e}"));
            assert_eq!(url.password().map(Secret::expose), Some(decoded));
        }
        assert!(HttpUrl::parse("http://u:%FF@h:9200").is_err());
        assert!(HttpUrl::parse("http://%FF@h:9200").is_err());
    }

    #[test]
    fn only_http_urls_with_a_host_are_taken() {
        for bad in [
            "ftp://h",
            "h:9200",
            "http://",
            "localhost",
            "http://h:9200/?x=1",
            "http://h:9200/#top",
            "http://u:%ff@h:9200",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
        for (bad, says) in [
            ("ftp://u:hunter2@h", "is not an http"),
            ("http://u:hunter2@h/?q", "query or fragment"),
            ("http://u:hunter2%ff@h", "not UTF-8"),
        ] {
            let e = HttpUrl::parse(bad).map(|_| ()).unwrap_err();
            assert!(
                e.reason().contains(says) && !e.reason().contains("hunter2"),
                "{e}"
            );
        }
    }
}
