//! The Elasticsearch-flavoured test servers: one table row per line (product,
//! version, how it starts). Real servers come from the vendors' integ-test zips on
//! Maven Central (fetched with `mvn`, cached under target/xtask/dist/), run as an
//! unprivileged user when we are root; `osmem` is the in-memory emulator from PyPI.
//! Adding a version is a row; a new way of starting one (a JVM launcher for
//! Elasticsearch 9) is a [`Start`] variant and its arm in [`launch`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::native::Launch;
use crate::util::{self, capture};
use crate::{net, osmem, step};

/// The server family, as the server itself reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    Elasticsearch,
    OpenSearch,
}

impl Product {
    pub fn name(self) -> &'static str {
        match self {
            Product::Elasticsearch => "elasticsearch",
            Product::OpenSearch => "opensearch",
        }
    }
}

/// How a line is installed and started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// `GROUP:<product>:VERSION:zip` from Maven Central, `bin/<product>` with
    /// `-E` settings, on a JDK whose major version lies in `java`.
    IntegTestZip {
        group: &'static str,
        java: (u32, u32),
    },
    /// The server's jars from Maven Central and our launcher
    /// (`es_embedded`), on a JDK whose major version lies in `java`.
    EmbeddedJars { java: (u32, u32) },
    /// `osmem-server` (PyPI), an in-memory emulator of the OpenSearch REST API.
    Osmem,
}

/// One server line of the table.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    /// Its name on the command line (`--servers es8,os3`) and in file names.
    pub name: &'static str,
    pub product: Product,
    pub version: &'static str,
    pub start: Start,
    /// Started by `services up` without `--servers`.
    pub default: bool,
}

const ES_GROUP: &str = "org.elasticsearch.distribution.integ-test-zip";
const OS_GROUP: &str = "org.opensearch.distribution.integ-test-zip";

/// Every line xtask can start, in the order test passes run.
pub static LINES: [Line; 6] = [
    Line {
        name: "es7",
        product: Product::Elasticsearch,
        version: "7.17.29",
        start: Start::IntegTestZip {
            group: ES_GROUP,
            java: (17, 17),
        },
        default: false,
    },
    Line {
        name: "es8",
        product: Product::Elasticsearch,
        version: "8.19.21",
        start: Start::IntegTestZip {
            group: ES_GROUP,
            java: (17, 24),
        },
        default: false,
    },
    Line {
        name: "es9",
        product: Product::Elasticsearch,
        version: "9.5.3",
        start: Start::EmbeddedJars { java: (21, 25) },
        default: true,
    },
    Line {
        name: "os2",
        product: Product::OpenSearch,
        version: "2.19.6",
        start: Start::IntegTestZip {
            group: OS_GROUP,
            java: (17, 21),
        },
        default: false,
    },
    Line {
        name: "os3",
        product: Product::OpenSearch,
        version: "3.6.0",
        start: Start::IntegTestZip {
            group: OS_GROUP,
            java: (21, 25),
        },
        default: true,
    },
    Line {
        name: "osmem",
        product: Product::OpenSearch,
        version: osmem::VERSION,
        start: Start::Osmem,
        default: false,
    },
];

/// The unprivileged user real servers run as when we are root (both refuse root).
const SERVER_USER: &str = "es-state-xtask";
pub const HEAP: &str = "-Xms512m -Xmx512m";
pub const READY_TIMEOUT: Duration = Duration::from_secs(300);

impl Line {
    pub fn find(name: &str) -> Option<&'static Line> {
        LINES.iter().find(|l| l.name == name)
    }

    /// The variable carrying this line's URL in the env file (`ES8_URL`).
    pub fn var(&self) -> &'static str {
        match self.name {
            "es7" => "ES7_URL",
            "es8" => "ES8_URL",
            "es9" => "ES9_URL",
            "os2" => "OS2_URL",
            "os3" => "OS3_URL",
            _ => "OSMEM_URL",
        }
    }

    /// `elasticsearch 8.19.21`, `opensearch 3.6.0 (osmem)`.
    pub fn label(&self) -> String {
        match self.start {
            Start::Osmem => format!("osmem-server {}", self.version),
            Start::IntegTestZip { .. } => format!("{} {}", self.product.name(), self.version),
            Start::EmbeddedJars { .. } => {
                format!("{} {} (jars)", self.product.name(), self.version)
            }
        }
    }
}

/// Parses `es7,es8,os3`.
pub fn parse_set(text: &str) -> Result<Vec<&'static Line>> {
    let mut lines = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let line = Line::find(name).with_context(|| {
            format!(
                "no server line `{name}`; the lines are {}",
                LINES.iter().map(|l| l.name).collect::<Vec<_>>().join(", ")
            )
        })?;
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    if lines.is_empty() {
        bail!("--servers needs at least one line");
    }
    // Table order, whatever order they were named in.
    lines.sort_by_key(|l| LINES.iter().position(|x| std::ptr::eq(x, *l)));
    Ok(lines)
}

pub fn default_set() -> Vec<&'static Line> {
    LINES.iter().filter(|l| l.default).collect()
}

/// Installs `line` if needed and describes how to start it on `port`.
pub fn launch(line: &'static Line, port: u16) -> Result<Launch> {
    match line.start {
        Start::Osmem => osmem::launch(port),
        Start::EmbeddedJars { java } => crate::es_embedded::launch(line, java, port),
        Start::IntegTestZip { group, java } => {
            let home = install_zip(line, group)?;
            let java_home = java_home(java)?;
            zip_launch(line, &home, &java_home, port)
        }
    }
}

/// The unpacked home of a zip line and a JDK for it.
pub fn installed_zip(line: &'static Line) -> Result<(PathBuf, PathBuf)> {
    let Start::IntegTestZip { group, java } = line.start else {
        bail!("{} is not a distribution zip", line.name);
    };
    Ok((install_zip(line, group)?, java_home(java)?))
}

/// The product's server home, unpacked from the cached zip (fetched once with mvn).
fn install_zip(line: &Line, group: &str) -> Result<PathBuf> {
    let artifact = line.product.name();
    let dist = util::xtask_dir().join("dist");
    std::fs::create_dir_all(&dist)?;
    let zip = dist.join(format!("{artifact}-{}.zip", line.version));
    if !zip.is_file() {
        let coordinates = format!("{group}:{artifact}:{}:zip", line.version);
        step!("{}: fetching {coordinates} with mvn (once)", line.name);
        let mvn = util::which("mvn").context(
            "mvn (Apache Maven) is not installed; it fetches the servers' zips from Maven \
             Central (Debian: `apt-get install -y maven`)",
        )?;
        util::run(
            Command::new(mvn)
                .args(["-q", "-B", "dependency:copy"])
                .arg(format!("-Dartifact={coordinates}"))
                .arg(format!("-DoutputDirectory={}", dist.display())),
        )
        .with_context(|| format!("could not fetch {coordinates} from Maven Central"))?;
    }
    let root = servers_root()?.join(line.name);
    let home = root.join(format!("{artifact}-{}", line.version));
    let marker = root.join(".xtask-unpacked");
    if !marker.is_file() {
        step!("{}: unpacking {}", line.name, zip.display());
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        util::run(
            Command::new("unzip")
                .arg("-q")
                .arg(&zip)
                .arg("-d")
                .arg(&root),
        )
        .context("unzip failed (Debian: `apt-get install -y unzip`)")?;
        if !home.join("bin").join(artifact).is_file() {
            bail!(
                "{} holds no {}/bin/{artifact}",
                zip.display(),
                home.display()
            );
        }
        std::fs::write(&marker, line.version)?;
    }
    Ok(home)
}

/// Where unpacked servers and their data live: under target/xtask/, unless we are
/// root and the server user cannot reach it (a checkout under /root): then under
/// the system's temporary directory.
pub fn servers_root() -> Result<PathBuf> {
    let inside = util::xtask_dir().join("servers");
    std::fs::create_dir_all(&inside)?;
    if !util::is_root() || user_can_enter(&inside)? {
        return Ok(inside);
    }
    let outside = std::env::temp_dir().join("es-state-xtask-servers");
    std::fs::create_dir_all(&outside)?;
    Ok(outside)
}

fn user_can_enter(dir: &Path) -> Result<bool> {
    ensure_user()?;
    let out = capture(
        Command::new("runuser")
            .args(["-u", SERVER_USER, "--", "test", "-x"])
            .arg(dir),
        Duration::from_secs(20),
    )?;
    Ok(out.status.success())
}

/// Creates the unprivileged server user once.
fn ensure_user() -> Result<()> {
    let exists = capture(
        Command::new("id").arg("-u").arg(SERVER_USER),
        Duration::from_secs(10),
    )?;
    if exists.status.success() {
        return Ok(());
    }
    step!("creating the system user {SERVER_USER} to run the test servers (they refuse root)");
    util::run(Command::new("useradd").args([
        "--system",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        SERVER_USER,
    ]))
    .context("useradd failed; the servers refuse to run as root")
}

/// A JDK whose major version lies in `range`: `JAVA_HOME`, the JDKs under
/// /usr/lib/jvm and the `java` on PATH; the lowest fitting major wins.
pub fn java_home((min, max): (u32, u32)) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("JAVA_HOME").filter(|h| !h.is_empty()) {
        candidates.push(PathBuf::from(home));
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/jvm") {
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        candidates.extend(dirs);
    }
    let java_on_path = util::which("java").and_then(|j| std::fs::canonicalize(j).ok());
    if let Some(home) = java_on_path
        .as_deref()
        .and_then(Path::parent)
        .and_then(Path::parent)
    {
        candidates.push(home.to_path_buf());
    }
    let mut found = Vec::new();
    let mut best: Option<(u32, PathBuf)> = None;
    for home in candidates {
        let Some(major) = java_major(&home) else {
            continue;
        };
        found.push(format!("{} ({major})", home.display()));
        if (min..=max).contains(&major) && best.as_ref().is_none_or(|(m, _)| major < *m) {
            best = Some((major, home));
        }
    }
    best.map(|(_, home)| home).with_context(|| {
        format!(
            "no JDK {min}..={max} found (found: {}); install one (Debian: openjdk-17-jdk-headless, \
             or Temurin 21+) or point JAVA_HOME at it",
            if found.is_empty() {
                "none".to_string()
            } else {
                found.join(", ")
            }
        )
    })
}

/// The major version in `<home>/release` (`JAVA_VERSION="17.0.15"`).
fn java_major(home: &Path) -> Option<u32> {
    if !home.join("bin").join("java").is_file() {
        return None;
    }
    let release = std::fs::read_to_string(home.join("release")).ok()?;
    let version = release
        .lines()
        .find_map(|l| l.strip_prefix("JAVA_VERSION="))?
        .trim_matches('"');
    let mut parts = version.split(['.', '-', '+']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

fn zip_launch(line: &Line, home: &Path, java_home: &Path, port: u16) -> Result<Launch> {
    let root = home.parent().context("server home has no parent")?;
    // A fresh node each start: no indices left from an earlier run.
    let data = root.join("data");
    let logs = root.join("logs");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    std::fs::create_dir_all(&logs)?;
    let transport_port = net::free_port()?;
    let (java_var, opts_var) = match line.product {
        Product::Elasticsearch => ("ES_JAVA_HOME", "ES_JAVA_OPTS"),
        Product::OpenSearch => ("OPENSEARCH_JAVA_HOME", "OPENSEARCH_JAVA_OPTS"),
    };
    let mut settings = node_settings(port, transport_port, &data, &logs);
    if line.product == Product::Elasticsearch {
        // The zips carry x-pack security; on, 8.x would demand TLS and passwords.
        settings.push("xpack.security.enabled=false".to_string());
    }
    let bin = home.join("bin").join(line.product.name());
    let mut cmd = as_server_user(root)?;
    cmd.arg(format!("{java_var}={}", java_home.display()))
        .arg(format!("{opts_var}={HEAP}"))
        .arg(bin)
        .args(settings.iter().map(|s| format!("-E{s}")))
        .current_dir(home);
    Ok(Launch {
        cmd,
        url: format!("http://127.0.0.1:{port}"),
        ready_timeout: READY_TIMEOUT,
    })
}

/// Settings every real line starts with, besides its ports and paths.
pub const COMMON_SETTINGS: &[&str] = &[
    // A full-ish disk must not turn indices read-only under the tests.
    "cluster.routing.allocation.disk.threshold_enabled=false",
    // Tests delete their indices by pattern.
    "action.destructive_requires_name=false",
];

/// `env`, run as the server user when we are root (after giving it `root`).
pub fn as_server_user(root: &Path) -> Result<Command> {
    if util::is_root() {
        ensure_user()?;
        util::run(Command::new("chown").arg("-R").arg(SERVER_USER).arg(root))?;
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", SERVER_USER, "--", "env"]);
        Ok(cmd)
    } else {
        Ok(Command::new("env"))
    }
}

/// `(product, version)` as the server at `url` reports it: `GET /`, or the local
/// node's info where `GET /` is not there (Elasticsearch 8.19's integ-test zip).
/// Whether `product` (`elasticsearch`, `opensearch`) at `version` has the
/// `_shard_doc` sort, by es-query's own rule (the one the source applies).
pub fn supports_shard_doc(product: &str, version: &str) -> bool {
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let flavor = if product == "opensearch" {
        es_query::Flavor::OpenSearch { major, minor }
    } else {
        es_query::Flavor::Elasticsearch { major, minor }
    };
    flavor.supports_shard_doc()
}

/// Whether the server at `url` has the `_shard_doc` sort, by the version it reports.
pub fn has_shard_doc(url: &str) -> Result<bool> {
    let (product, version) = server_version(url)
        .with_context(|| format!("the server at {url} does not say its version"))?;
    Ok(supports_shard_doc(&product, &version))
}

pub fn server_version(url: &str) -> Option<(String, String)> {
    if let Ok((200, body)) = net::http("GET", url, "/") {
        let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
        let version = doc["version"]["number"].as_str()?.to_owned();
        let product = match doc["version"]["distribution"].as_str() {
            Some("opensearch") => "opensearch",
            _ => "elasticsearch",
        };
        return Some((product.to_owned(), version));
    }
    let (status, body) = net::http(
        "GET",
        url,
        "/_nodes/_local?filter_path=nodes.*.version,nodes.*.build_flavor",
    )
    .ok()?;
    if status != 200 {
        return None;
    }
    let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
    let node = doc["nodes"].as_object()?.values().next()?;
    let product = if node.get("build_flavor").is_some() {
        "elasticsearch"
    } else {
        "opensearch"
    };
    Some((product.to_owned(), node["version"].as_str()?.to_owned()))
}

/// The settings of every node started here (`key=value`, passed as `-E`): a
/// single node on loopback at these ports, with its data and logs there, and
/// [`COMMON_SETTINGS`].
fn node_settings(port: u16, transport_port: u16, data: &Path, logs: &Path) -> Vec<String> {
    let mut settings = vec![
        "discovery.type=single-node".to_string(),
        "network.host=127.0.0.1".to_string(),
        format!("http.port={port}"),
        format!("transport.port={transport_port}"),
        format!("path.data={}", data.display()),
        format!("path.logs={}", logs.display()),
    ];
    settings.extend(COMMON_SETTINGS.iter().map(|s| s.to_string()));
    settings
}

/// An Elasticsearch node a scenario or benchmark runs for itself, apart from
/// the shared test servers: started as the server user in a process group of
/// its own (stopped as a whole when dropped), its output in `log`.
pub struct PrivateNode {
    pub child: std::process::Child,
    pub port: u16,
    pub log: PathBuf,
}

impl PrivateNode {
    /// A copy of the distribution's `config` at `root/config`, for the node's own
    /// settings files; returns its path.
    pub fn copy_config(home: &Path, root: &Path) -> Result<PathBuf> {
        let conf = root.join("config");
        util::run(
            Command::new("cp")
                .arg("-r")
                .arg(home.join("config"))
                .arg(&conf),
        )?;
        Ok(conf)
    }

    /// Starts `home/bin/elasticsearch` on `java_home` with the configuration
    /// in `conf`, single-node on free loopback ports, data and logs under
    /// `root`, [`COMMON_SETTINGS`] and then `extra` (`key=value`, each passed as
    /// `-E`). `what` names the node in messages ("the secured node").
    pub fn start(
        home: &Path,
        java_home: &Path,
        root: &Path,
        conf: &Path,
        extra: &[String],
        what: &str,
    ) -> Result<PrivateNode> {
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;

        let (data, logs) = (root.join("data"), root.join("logs"));
        std::fs::create_dir_all(&data)?;
        std::fs::create_dir_all(&logs)?;
        let port = net::free_port()?;
        let transport_port = net::free_port()?;
        let mut settings = node_settings(port, transport_port, &data, &logs);
        settings.extend(extra.iter().cloned());
        let log = root.join("node.log");
        let mut cmd = as_server_user(root)?;
        cmd.arg(format!("ES_JAVA_HOME={}", java_home.display()))
            .arg(format!("ES_PATH_CONF={}", conf.display()))
            .arg(format!("ES_JAVA_OPTS={HEAP}"))
            .arg(home.join("bin/elasticsearch"))
            .args(settings.iter().map(|s| format!("-E{s}")))
            .current_dir(home);
        let file = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        Ok(PrivateNode { child, port, log })
    }

    /// Polls `ready` until it holds; fails with the log's tail when the node
    /// exits first or does not get ready within [`READY_TIMEOUT`].
    pub fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        while !ready() {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{what} exited ({status}); log {}:\n{}",
                    self.log.display(),
                    util::tail(&self.log, 20)
                );
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "{what} did not get ready in {READY_TIMEOUT:?}; log {}:\n{}",
                self.log.display(),
                util::tail(&self.log, 20)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(())
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        // The whole group: runuser, the launcher script and the JVM.
        if let Err(e) = crate::native::stop_group(self.child.id()) {
            step!("  a private node: {e:#}");
        }
        let _ = self.child.wait();
    }
}
