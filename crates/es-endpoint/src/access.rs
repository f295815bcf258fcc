//! A cluster and how to reach it: URL, credentials, the CA to trust.

use std::fmt;
use std::path::PathBuf;

use crate::{HttpUrl, Invalid, Secret};

/// How requests authenticate.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// The user.
        username: String,
        /// The password (may be empty).
        password: Secret,
    },
    /// `Authorization: ApiKey <encoded>`: the base64 `id:key` value
    /// Elasticsearch returns as `encoded`.
    ApiKey(Secret),
}

impl Auth {
    /// The value of the `Authorization` header, if any.
    pub fn header_value(&self) -> Option<Secret> {
        match self {
            Auth::None => None,
            Auth::Basic { username, password } => Some(Secret::new(format!(
                "Basic {}",
                base64(format!("{username}:{}", password.expose()).as_bytes())
            ))),
            Auth::ApiKey(key) => Some(Secret::new(format!("ApiKey {}", key.expose().trim()))),
        }
    }

    /// `none`, `basic (user NAME)` or `api key`: what a log line may say.
    pub fn describe(&self) -> String {
        match self {
            Auth::None => "none".to_owned(),
            Auth::Basic { username, .. } => format!("basic (user {username:?})"),
            Auth::ApiKey(_) => "api key".to_owned(),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The access keys of one configuration table, as written next to its `url`:
/// `api_key`, `username`, `password`, `ca_file`. Each connection to a cluster
/// takes the same four.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// `api_key`.
    pub api_key: Option<Secret>,
    /// `username`.
    pub username: Option<String>,
    /// `password`.
    pub password: Option<Secret>,
    /// `ca_file`: a PEM file of CA certificates trusted for `https://`, on top of
    /// the root set built in.
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("api_key", &self.api_key)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Access {
    /// Whether any of the credential keys (not `ca_file`) is set.
    pub fn has_credentials(&self) -> bool {
        self.api_key.is_some() || self.username.is_some() || self.password.is_some()
    }
}

/// A refused combination of keys: the key to name (`"api_key"`, `"username"`,
/// `"password"`, `"ca_file"`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The key of the table to name in the message.
    pub key: &'static str,
    /// Why.
    pub reason: Invalid,
}

/// One cluster as a client reaches it: the URL (without credentials), the
/// authentication, and the CA file to trust.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: HttpUrl,
    auth: Auth,
    ca_file: Option<PathBuf>,
}

impl Endpoint {
    /// A cluster without credentials or CA file, except what `url` carries.
    pub fn from_url(url: HttpUrl) -> Self {
        // Credentials in the URL alone cannot conflict.
        Self::new(url, Access::default()).unwrap_or_else(|_| unreachable!())
    }

    /// Resolves `url` and `access` into one authentication, refusing what is
    /// ambiguous: an API key together with a password, credentials both in the
    /// URL and as `username`/`password`, a password without a user.
    pub fn new(url: HttpUrl, access: Access) -> Result<Self, KeyError> {
        let refuse = |key, reason: &str| KeyError {
            key,
            reason: Invalid::new(reason),
        };
        if access.password.is_some() && access.username.is_none() {
            return Err(refuse(
                "password",
                "is set without username; set both, or use api_key",
            ));
        }
        if access.username.is_some() && url.has_credentials() {
            return Err(refuse(
                "username",
                "credentials are given both in url and as username/password; keep one",
            ));
        }
        if access.api_key.is_some() && (access.username.is_some() || url.has_credentials()) {
            return Err(refuse(
                "api_key",
                "is set together with a user and password (username/password or in url); keep one",
            ));
        }
        if access
            .api_key
            .as_ref()
            .is_some_and(|k| k.expose().trim().is_empty())
        {
            return Err(refuse(
                "api_key",
                "is empty; give the encoded API key or remove the key",
            ));
        }
        if access
            .ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(refuse("ca_file", "is empty; give the path of a PEM file"));
        }
        let auth = match (access.api_key, access.username, url.username()) {
            (Some(key), _, _) => Auth::ApiKey(key),
            (None, Some(username), _) => Auth::Basic {
                username,
                password: access.password.unwrap_or_else(|| Secret::new("")),
            },
            (None, None, Some(user)) => Auth::Basic {
                username: user.to_owned(),
                password: url.password().cloned().unwrap_or_else(|| Secret::new("")),
            },
            (None, None, None) => Auth::None,
        };
        Ok(Endpoint {
            url,
            auth,
            ca_file: access.ca_file,
        })
    }

    /// The URL; [`HttpUrl::base`] is what requests go to.
    pub fn url(&self) -> &HttpUrl {
        &self.url
    }

    /// How requests authenticate.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The CA file to trust, if any.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.ca_file.as_deref()
    }

    /// The same endpoint trusting `ca_file` instead of its own.
    pub fn with_ca_file(mut self, ca_file: PathBuf) -> Self {
        self.ca_file = Some(ca_file);
        self
    }

    /// The same endpoint trusting `ca_file` when it trusts none of its own.
    pub fn or_ca_file(mut self, ca_file: Option<&std::path::Path>) -> Self {
        if self.ca_file.is_none() {
            self.ca_file = ca_file.map(std::path::Path::to_owned);
        }
        self
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("auth", &self.auth)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Standard base64 with padding (RFC 4648), for the `Basic` header.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> HttpUrl {
        HttpUrl::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn one_authentication_is_resolved_from_url_or_keys() {
        let from_url = Endpoint::from_url(url("https://elastic:pw@h:9200"));
        assert_eq!(
            from_url
                .auth()
                .header_value()
                .map(|s| s.expose().to_owned()),
            Some("Basic ZWxhc3RpYzpwdw==".to_owned())
        );
        let keys = Endpoint::new(
            url("https://h:9200"),
            Access {
                username: Some("elastic".into()),
                password: Some(Secret::new("pw")),
                ..Access::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(keys.auth(), from_url.auth());
        let key = Endpoint::new(
            url("https://h:9200"),
            Access {
                api_key: Some(Secret::new(" aWQ6a2V5 ")),
                ..Access::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            key.auth().header_value().map(|s| s.expose().to_owned()),
            Some("ApiKey aWQ6a2V5".to_owned())
        );
        assert_eq!(Endpoint::from_url(url("http://h")).auth(), &Auth::None);
    }

    #[test]
    fn ambiguous_credentials_are_refused_naming_the_key() {
        let cases = [
            ("https://u:p@h", Some("k"), None, None, "api_key"),
            ("https://h", Some("k"), Some("u"), Some("p"), "api_key"),
            ("https://u:p@h", None, Some("u"), None, "username"),
            ("https://h", None, None, Some("p"), "password"),
            ("https://h", Some(" "), None, None, "api_key"),
        ];
        for (text, api_key, username, password, key) in cases {
            let access = Access {
                api_key: api_key.map(Secret::new),
                username: username.map(str::to_owned),
                password: password.map(Secret::new),
                ca_file: None,
            };
            let e = Endpoint::new(url(text), access).map(|_| ()).unwrap_err();
            assert_eq!(e.key, key, "{text} {api_key:?} {username:?}: {e:?}");
        }
    }

    #[test]
    fn no_secret_is_shown() {
        let e = Endpoint::new(
            url("https://elastic:hunter2@h:9200"),
            Access {
                ca_file: Some("ca.pem".into()),
                ..Access::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let shown = format!("{e:?} {:?}", e.auth());
        assert!(
            !shown.contains("hunter2") && shown.contains("elastic"),
            "{shown}"
        );
        let k = Access {
            api_key: Some(Secret::new("c2VjcmV0")),
            ..Access::default()
        };
        assert!(!format!("{k:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn a_ca_file_is_inherited_only_when_none_is_set() {
        let own = Endpoint::new(
            url("https://h"),
            Access {
                ca_file: Some("own.pem".into()),
                ..Access::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let other = std::path::Path::new("other.pem");
        assert_eq!(
            own.clone().or_ca_file(Some(other)).ca_file(),
            Some(std::path::Path::new("own.pem"))
        );
        assert_eq!(
            Endpoint::from_url(url("https://h"))
                .or_ca_file(Some(other))
                .ca_file(),
            Some(other)
        );
    }
}
