//! Just enough HTTP and RESP over `std::net` to check and clean up the test
//! services, so xtask needs no HTTP or Redis client crate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, bail};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A free loopback port: bind port 0 and let the kernel choose.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("could not bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The parts of a `scheme://[user[:password]@]host[:port][/path]` URL we need.
#[derive(Debug, Clone, PartialEq)]
pub struct Url {
    pub scheme: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url> {
        let (scheme, rest) = url
            .split_once("://")
            .with_context(|| format!("`{url}` is not a URL (expected scheme://host:port)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pw)) => (Some(user.to_string()), Some(pw.to_string())),
                None => (Some(u.to_string()), None),
            },
            None => (None, None),
        };
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            "redis" | "rediss" => 6379,
            _ => 0,
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .with_context(|| format!("bad port `{p}` in `{url}`"))?,
            ),
            None => (hostport, default_port),
        };
        if host.is_empty() || port == 0 {
            bail!("`{url}` has no host or port");
        }
        Ok(Url {
            scheme: scheme.to_string(),
            user: user.filter(|u| !u.is_empty()),
            password,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    fn connect(&self) -> Result<TcpStream> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .with_context(|| format!("cannot resolve {}", self.host))?;
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .with_context(|| format!("cannot connect to {}:{}", self.host, self.port))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(stream)
    }
}

/// Whether anything accepts TCP connections at `host:port`.
pub fn tcp_answers(host: &str, port: u16) -> bool {
    let url = Url {
        scheme: "tcp".into(),
        user: None,
        password: None,
        host: host.into(),
        port,
        path: String::new(),
    };
    url.connect().is_ok()
}

/// One HTTP/1.0 request (no keep-alive, no chunking); returns status and body.
pub fn http(method: &str, base: &str, path: &str) -> Result<(u16, String)> {
    let url = Url::parse(base)?;
    if url.scheme != "http" {
        bail!("xtask speaks plain http only; `{base}` uses {}", url.scheme);
    }
    let mut stream = url.connect()?;
    let full_path = format!("{}{}", url.path.trim_end_matches('/'), path);
    let mut req = format!(
        "{method} {full_path} HTTP/1.0\r\nHost: {}:{}\r\nAccept: application/json\r\n",
        url.host, url.port
    );
    if let Some(user) = &url.user {
        let creds = format!("{user}:{}", url.password.as_deref().unwrap_or(""));
        req.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64(creds.as_bytes())
        ));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(req.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response from {base}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Whether the Elasticsearch-compatible server at `url` is ready: its cluster is at
/// least yellow (`GET /_cluster/health?wait_for_status=yellow`), or, for a server
/// without that API, `GET /` answers 200.
pub fn es_answers(url: &str) -> bool {
    match http(
        "GET",
        url,
        "/_cluster/health?wait_for_status=yellow&timeout=1s",
    ) {
        Ok((200, _)) => true,
        Ok((404 | 405, _)) => matches!(http("GET", url, "/"), Ok((200, _))),
        _ => false,
    }
}

/// A RESP reply, as far as we need it.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Status(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

/// A connection speaking RESP to Redis.
#[derive(Debug)]
pub struct Redis {
    reader: BufReader<TcpStream>,
}

impl Redis {
    /// Connects to a `redis://[user:password@]host:port[/db]` URL (AUTH and SELECT as given).
    pub fn connect(url: &str) -> Result<Redis> {
        let parsed = Url::parse(url)?;
        if parsed.scheme != "redis" {
            bail!("xtask speaks plain redis:// only; got `{url}`");
        }
        let stream = parsed.connect()?;
        let mut redis = Redis {
            reader: BufReader::new(stream),
        };
        if let Some(pw) = &parsed.password {
            match &parsed.user {
                Some(user) => redis.cmd(&["AUTH", user, pw])?,
                None => redis.cmd(&["AUTH", pw])?,
            };
        }
        let db = parsed.path.trim_matches('/');
        if !db.is_empty() {
            redis.cmd(&["SELECT", db])?;
        }
        Ok(redis)
    }

    /// Sends one command and reads its reply; a Redis error reply is an error.
    pub fn cmd(&mut self, args: &[&str]) -> Result<Reply> {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.reader.get_mut().write_all(req.as_bytes())?;
        self.read_reply()
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("redis closed the connection");
        }
        Ok(line.trim_end_matches("\r\n").to_string())
    }

    fn read_reply(&mut self) -> Result<Reply> {
        let line = self.read_line()?;
        let (kind, rest) = line.split_at(line.len().min(1));
        Ok(match kind {
            "+" => Reply::Status(rest.to_string()),
            "-" => bail!("redis error: {rest}"),
            ":" => Reply::Int(rest.parse()?),
            "$" => {
                let len: i64 = rest.parse()?;
                if len < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut buf = vec![0; len as usize + 2];
                    self.reader.read_exact(&mut buf)?;
                    buf.truncate(len as usize);
                    Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
                }
            }
            "*" => {
                let n: i64 = rest.parse()?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(self.read_reply()?);
                }
                Reply::Array(items)
            }
            _ => bail!("unexpected redis reply `{line}`"),
        })
    }
}

/// Whether Redis at `url` answers PING with PONG.
pub fn redis_answers(url: &str) -> bool {
    Redis::connect(url)
        .and_then(|mut r| r.cmd(&["PING"]))
        .is_ok_and(|reply| reply == Reply::Status("PONG".into()))
}

/// Deletes every key starting with `prefix`; returns how many.
pub fn redis_delete_prefix(url: &str, prefix: &str) -> Result<usize> {
    let mut redis = Redis::connect(url)?;
    let pattern = format!("{prefix}*");
    let Reply::Array(keys) = redis.cmd(&["KEYS", &pattern])? else {
        bail!("KEYS did not return an array");
    };
    let mut deleted = 0;
    for key in keys {
        if let Reply::Bulk(Some(key)) = key {
            redis.cmd(&["DEL", &key])?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Standard base64 with padding (basic-auth headers, Elasticsearch's API key `encoded`).
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
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

    #[test]
    fn parses_urls() -> Result<()> {
        let u = Url::parse("http://elastic:secret@127.0.0.1:9200")?;
        assert_eq!(
            (u.user.as_deref(), u.password.as_deref()),
            (Some("elastic"), Some("secret"))
        );
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 9200));
        let r = Url::parse("redis://localhost/2")?;
        assert_eq!((r.port, r.path.as_str()), (6379, "/2"));
        assert!(Url::parse("localhost:9200").is_err());
        Ok(())
    }

    #[test]
    fn encodes_base64() {
        assert_eq!(base64(b"elastic:changeme"), "ZWxhc3RpYzpjaGFuZ2VtZQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }
}
