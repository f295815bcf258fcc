//! The one place an [`Endpoint`] becomes reqwest settings (feature `reqwest`):
//! every crate's client trusts the same CA file and sends the same header.

use reqwest::header::HeaderValue;

use crate::{Endpoint, Invalid, KeyError};

/// `builder` asking for uncompressed answers, whatever compression features
/// reqwest was built with (see [`Endpoint::configure_client`]). For a client
/// built without an [`Endpoint`], such as a benchmark's floor, so that it sends
/// the same requests.
pub fn uncompressed(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    builder.no_gzip().no_deflate().no_brotli().no_zstd()
}

impl Endpoint {
    /// `builder` trusting the certificates of [`ca_file`](Endpoint::ca_file)
    /// too (reads the file; one PEM file may hold several certificates), and
    /// asking for uncompressed answers.
    ///
    /// Compression is off whatever reqwest features the build holds. reqwest
    /// asks for gzip (likewise deflate, brotli, zstd) as soon as any crate in
    /// the build turns that feature on, as the official `elasticsearch` client
    /// does: the server would compress every page and the client inflate it,
    /// depending on what else was compiled. Off is the official clients'
    /// default; on loopback and in a data centre it saves both sides' CPU.
    pub fn configure_client(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, KeyError> {
        let mut builder = uncompressed(builder);
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

    /// The request head a client built by `configure_client` sends, read by a
    /// one-shot loopback listener.
    fn request_head(builder: reqwest::ClientBuilder) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let url = format!(
            "http://{}/",
            listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            String::from_utf8_lossy(&head).to_lowercase()
        });
        let client = builder.build().unwrap_or_else(|e| panic!("{e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let status = runtime
            .block_on(client.get(url).send())
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 200);
        server
            .join()
            .unwrap_or_else(|_| panic!("the listener panicked"))
    }

    #[test]
    fn answers_are_asked_for_uncompressed_whatever_features_reqwest_has() {
        // This crate's tests build reqwest with `gzip` (as the official client
        // does): a plain client asks for compressed answers...
        let plain = request_head(reqwest::Client::builder());
        assert!(plain.contains("accept-encoding: gzip"), "{plain}");
        // ...and one configured for an endpoint does not.
        let configured = endpoint(Access::default())
            .configure_client(reqwest::Client::builder())
            .unwrap_or_else(|e| panic!("{e:?}"));
        let head = request_head(configured);
        assert!(head.starts_with("get / http/1.1"), "{head}");
        assert!(!head.contains("accept-encoding"), "{head}");
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
