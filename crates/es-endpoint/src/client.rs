//! The one place an [`Endpoint`] becomes reqwest settings (feature `reqwest`):
//! every crate's client trusts the same CA file and sends the same header.

use reqwest::header::HeaderValue;

use crate::{Endpoint, Invalid, KeyError};

impl Endpoint {
    /// `builder` trusting the certificates of [`ca_file`](Endpoint::ca_file)
    /// too (reads the file; one PEM file may hold several certificates).
    pub fn configure_client(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, KeyError> {
        let Some(path) = self.ca_file() else {
            return Ok(builder);
        };
        let refuse = |reason: String| KeyError {
            key: "ca_file",
            reason: Invalid::new(reason),
        };
        let pem = std::fs::read(path)
            .map_err(|e| refuse(format!("cannot read {}: {e}", path.display())))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                refuse(format!(
                    "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    path.display()
                ))
            })?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
        Ok(builder)
    }

    /// The `Authorization` header, marked sensitive (never printed by the
    /// HTTP stack), or `None` without credentials.
    pub fn authorization(&self) -> Result<Option<HeaderValue>, KeyError> {
        let Some(value) = self.auth().header_value() else {
            return Ok(None);
        };
        let mut header = HeaderValue::from_str(value.expose()).map_err(|_| KeyError {
            key: match self.auth() {
                crate::Auth::ApiKey(_) => "api_key",
                _ => "username",
            },
            reason: Invalid::new("contains characters not allowed in an HTTP header"),
        })?;
        header.set_sensitive(true);
        Ok(Some(header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Access, HttpUrl, Secret};

    fn endpoint(access: Access) -> Endpoint {
        Endpoint::new(
            HttpUrl::parse("https://h:9200").unwrap_or_else(|e| panic!("{e}")),
            access,
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn a_ca_file_that_is_missing_or_not_pem_is_named() {
        let dir = std::env::temp_dir().join(format!("es-endpoint-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap_or_else(|e| panic!("{e}"));
        for (path, says) in [
            (dir.join("missing.pem"), "cannot read"),
            (not_pem, "holds no PEM certificate"),
        ] {
            let e = endpoint(Access {
                ca_file: Some(path.clone()),
                ..Access::default()
            })
            .configure_client(reqwest::Client::builder())
            .map(|_| ())
            .unwrap_err();
            assert_eq!(e.key, "ca_file");
            assert!(
                e.reason.reason().contains(says)
                    && e.reason.reason().contains(&path.display().to_string()),
                "{e:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_header_is_sensitive() {
        let header = endpoint(Access {
            api_key: Some(Secret::new("aWQ6a2V5")),
            ..Access::default()
        })
        .authorization()
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(header.as_ref().is_some_and(HeaderValue::is_sensitive));
        assert_eq!(
            header.and_then(|h| h.to_str().ok().map(str::to_owned)),
            Some("ApiKey aWQ6a2V5".to_owned())
        );
        let bad = endpoint(Access {
            api_key: Some(Secret::new("a\nb")),
            ..Access::default()
        })
        .authorization()
        .map(|_| ())
        .unwrap_err();
        assert_eq!(bad.key, "api_key");
    }
}
