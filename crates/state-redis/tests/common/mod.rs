//! Shared by the Redis tests: unique key prefixes with cleanup, and a
//! redis-server of the test's own on a free loopback port.
#![allow(
    dead_code,
    clippy::print_stderr,
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use state_core::conformance::Guarded;
use state_redis::RedisStore;

/// `REDIS_URL`, or `None` (with a line on stderr) when unset outside `cargo xtask test`.
pub fn redis_url() -> Option<String> {
    state_core::conformance::service_endpoint("REDIS_URL")
}

/// A key prefix no other test (or test run) uses.
pub fn unique_prefix(label: &str) -> String {
    format!("state-redis-test:{label}:{:016x}:", rand::random::<u64>())
}

/// A store under a unique prefix whose keys are deleted when it is dropped.
/// A Redis store on its own key prefix; its keys are deleted when it is dropped.
pub type CleanStore = Guarded<RedisStore, KeyCleanup>;

/// Deletes every key under `prefix` on drop.
#[derive(Debug)]
pub struct KeyCleanup {
    url: String,
    prefix: String,
}

pub async fn clean_store(url: &str, label: &str) -> CleanStore {
    clean_store_with_prefix(url, &unique_prefix(label)).await
}

pub async fn clean_store_with_prefix(url: &str, prefix: &str) -> CleanStore {
    let store = RedisStore::connect(url, prefix)
        .await
        .unwrap_or_else(|e| panic!("REDIS_URL is set but Redis cannot be used: {e}"));
    Guarded::new(
        store,
        KeyCleanup {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        },
    )
}

impl Drop for KeyCleanup {
    fn drop(&mut self) {
        let pattern = state_redis::escape_glob(&self.prefix) + "*";
        let cleaned = redis::Client::open(self.url.as_str()).and_then(|c| {
            let mut con = c.get_connection()?;
            let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg(&pattern).query(&mut con)?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(keys).exec(&mut con)?;
            }
            Ok(())
        });
        if let Err(e) = cleaned {
            eprintln!("could not clean up keys {pattern}: {e}");
        }
    }
}

/// The redis-server binary: `$REDIS_SERVER_BIN`, else `redis-server` on `PATH`.
///
/// `None` (after a line on stderr) when there is none and no Redis is expected;
/// a panic when `REDIS_URL` or `XTASK_REQUIRE_SERVICES=1` says Redis tests must run.
pub fn redis_server_bin() -> Option<PathBuf> {
    let candidate = std::env::var_os("REDIS_SERVER_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("redis-server"))
                    .find(|p| p.is_file())
            })
        });
    match candidate {
        Some(bin) if bin.is_file() => Some(bin),
        other => {
            let required = std::env::var("REDIS_URL").is_ok_and(|v| !v.trim().is_empty())
                || std::env::var("XTASK_REQUIRE_SERVICES").as_deref() == Ok("1");
            let what = match other {
                Some(bin) => format!("REDIS_SERVER_BIN={} is not a file", bin.display()),
                None => "no redis-server on PATH and REDIS_SERVER_BIN is not set".to_owned(),
            };
            if required {
                panic!("{what}, but REDIS_URL/XTASK_REQUIRE_SERVICES says Redis tests must run");
            }
            eprintln!("{what}: tests needing their own redis-server were not run");
            None
        }
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it right after).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"))
        .port()
}

/// A redis-server of the test's own, killed when dropped.
pub struct OwnRedis {
    bin: PathBuf,
    pub port: u16,
    args: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// How readiness is checked: a client for the server (TLS and password included).
    probe: redis::Client,
}

impl OwnRedis {
    /// Starts `bin` with `extra` arguments on a free port; `port_arg` is
    /// `--port` or `--tls-port`; `probe_url` builds the readiness client.
    pub async fn start(
        bin: &Path,
        port_arg: &str,
        extra: &[String],
        probe: impl Fn(u16) -> redis::Client,
    ) -> OwnRedis {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        if port_arg != "--port" {
            args.extend(["--port".into(), "0".into()]);
        }
        args.extend([port_arg.to_owned(), port.to_string()]);
        args.extend(extra.iter().cloned());
        let mut server = OwnRedis {
            bin: bin.to_owned(),
            port,
            args,
            dir,
            child: None,
            probe: probe(port),
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Polls PING until the server answers: a bounded loop, not a fixed sleep.
    async fn wait_ready(&mut self) {
        let mut last = String::new();
        for _ in 0..200 {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "redis-server on port {} exited at start with {status}",
                    self.port
                );
            }
            match self.probe.get_multiplexed_async_connection().await {
                Ok(mut con) => match redis::cmd("PING").query_async::<String>(&mut con).await {
                    Ok(_) => return,
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "redis-server on port {} did not answer PING within ~5 s: {last}",
            self.port
        );
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain-TCP probe client for `redis://[:password@]127.0.0.1:port`.
pub fn plain_probe(password: Option<&'static str>) -> impl Fn(u16) -> redis::Client {
    move |port| {
        let url = match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{port}"),
            None => format!("redis://127.0.0.1:{port}"),
        };
        redis::Client::open(url).unwrap_or_else(|e| panic!("{e}"))
    }
}
