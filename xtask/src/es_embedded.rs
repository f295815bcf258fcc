//! Elasticsearch 9 without a distribution zip (Maven Central has none for 9.x):
//! the server's own jars plus `transport-netty4`, resolved with `mvn` from a
//! generated pom, and a small launcher of ours (`xtask/java/es-embedded`) that
//! builds the node in one JVM with netty4 as its transport and answers `GET /`
//! (the `rest-root` module is not on Maven Central). Everything the connector,
//! the state store and the bulk processor use (search, point in time,
//! `_shard_doc`, scroll, slices, bulk, `if_seq_no`) is the server's own code.
//! Not there: analysis-common, painless, x-pack (security included).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::native::Launch;
use crate::search_server::{self, HEAP, READY_TIMEOUT};
use crate::{net, step, util};

/// The launcher's source, compiled on install.
fn launcher_source() -> PathBuf {
    util::root().join("xtask/java/es-embedded/org/elasticsearch/plugins/Launcher.java")
}

fn pom(version: &str) -> String {
    format!(
        r#"<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.xtask</groupId>
  <artifactId>es-embedded</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.elasticsearch</groupId><artifactId>elasticsearch</artifactId><version>{version}</version></dependency>
    <dependency><groupId>org.elasticsearch.plugin</groupId><artifactId>transport-netty4</artifactId><version>{version}</version></dependency>
  </dependencies>
</project>
"#
    )
}

/// `<root>/es-embedded-VERSION` with `lib/` (the jars) and `classes/` (the
/// launcher), made once (again when the launcher's source changed).
fn install(root: &Path, version: &str, java_home: &Path) -> Result<PathBuf> {
    let dir = root.join(format!("es-embedded-{version}"));
    let source = launcher_source();
    let source_text = std::fs::read_to_string(&source)
        .with_context(|| format!("cannot read {}", source.display()))?;
    let marker = dir.join(".xtask-installed");
    let stamp = format!("{version}\n{}", source_text.len());
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == stamp) {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("pom.xml"), pom(version))?;
    step!("es9: resolving Elasticsearch {version} jars with mvn (once)");
    let mvn = util::which("mvn").context(
        "mvn (Apache Maven) is not installed; it fetches the server's jars from Maven Central \
         (Debian: `apt-get install -y maven`)",
    )?;
    util::run(
        Command::new(mvn)
            .args(["-q", "-B", "dependency:copy-dependencies", "-DoutputDirectory=lib"])
            .current_dir(&dir),
    )
    .with_context(|| format!("could not fetch org.elasticsearch:elasticsearch:{version} and its dependencies from Maven Central"))?;
    step!("es9: compiling the launcher");
    util::run(
        Command::new(java_home.join("bin").join("javac"))
            .args(["-nowarn", "-d", "classes", "-cp", "lib/*"])
            .arg(&source)
            .current_dir(&dir),
    )
    .context("javac failed on the Elasticsearch launcher")?;
    // Elasticsearch loads zstd (best_compression) from its own library
    // directory; Debian's libzstd serves.
    let native = dir.join("native");
    std::fs::create_dir_all(&native)?;
    let zstd = Path::new("/usr/lib/x86_64-linux-gnu/libzstd.so.1");
    if zstd.is_file() {
        std::os::unix::fs::symlink(zstd, native.join("libzstd.so"))?;
    }
    std::fs::write(&marker, stamp)?;
    Ok(dir)
}

/// Installs the `es9` line if needed and describes how to start it on `port`.
pub fn launch(line: &search_server::Line, java: (u32, u32), port: u16) -> Result<Launch> {
    let java_home = search_server::java_home(java)?;
    let root = search_server::servers_root()?.join(line.name);
    std::fs::create_dir_all(&root)?;
    let dir = install(&root, line.version, &java_home)?;
    if !dir
        .join("lib")
        .join(format!("elasticsearch-{}.jar", line.version))
        .is_file()
    {
        bail!(
            "{} holds no elasticsearch-{}.jar",
            dir.display(),
            line.version
        );
    }
    // A fresh node each start: no indices left from an earlier run.
    let home = root.join("home");
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join("tmp"))?;
    let transport_port = net::free_port()?;
    let mut cmd = search_server::as_server_user(&root)?;
    cmd.arg(java_home.join("bin").join("java"))
        .args(HEAP.split(' '))
        .args([
            "-XX:+UseSerialGC",
            "-Des.set.netty.runtime.available.processors=false",
            "-Dlog4j2.shutdownHookEnabled=false",
            "-Dorg.elasticsearch.nativeaccess.enableVectorLibrary=false",
            "--enable-native-access=ALL-UNNAMED",
        ])
        .arg(format!(
            "-Des.nativelibs.path={}",
            dir.join("native").display()
        ))
        .arg(format!("-Djava.io.tmpdir={}", home.join("tmp").display()))
        .arg("-cp")
        .arg(format!("{0}/classes:{0}/lib/*", dir.display()))
        .arg("org.elasticsearch.plugins.Launcher")
        .arg(port.to_string())
        .arg(transport_port.to_string())
        .arg(&home)
        .args(search_server::COMMON_SETTINGS)
        .current_dir(&dir);
    Ok(Launch {
        cmd,
        url: format!("http://127.0.0.1:{port}"),
        ready_timeout: READY_TIMEOUT,
    })
}
