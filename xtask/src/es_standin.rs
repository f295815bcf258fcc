//! A stand-in for the analysis components Elasticsearch's `.security` index
//! needs, for the integ-test zip, which has no `analysis-common` module (and
//! the module is not on Maven Central). Without them creating an API key fails
//! with `Unknown filter type [pattern_capture] for [email]`: the index's
//! settings define an `email` analyzer (tokenizer `uax_url_email`, filters a
//! `pattern_capture` one, `lowercase`, `unique`). Our plugin
//! (`xtask/java/es-analysis-standin`) registers exactly those four, each a thin
//! wrapper over Lucene classes the server ships.
//!
//! It is compiled with the line's JDK against the server's own `lib/` jars (the
//! very jars it runs with; Maven Central's `org.elasticsearch:elasticsearch` and
//! Lucene are the same artifacts), packed into a jar with its
//! `plugin-descriptor.properties`, and installed into a private home: a
//! hard-linked copy of the unpacked zip whose `plugins/` holds only this
//! plugin, so the shared test server stays exactly the distribution.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

use crate::{step, util};

/// The plugin's name (its directory under `plugins/`).
pub const NAME: &str = "xtask-security-analysis";
const CLASSNAME: &str = "local.xtask.analysis.SecurityAnalysisPlugin";
/// The class files' target and the descriptor's `java.version`.
const JAVA_RELEASE: &str = "17";

fn source() -> PathBuf {
    util::root()
        .join("xtask/java/es-analysis-standin/local/xtask/analysis/SecurityAnalysisPlugin.java")
}

fn descriptor(es_version: &str) -> String {
    format!(
        "description=Stand-in for the analysis-common components the .security index needs \
         (uax_url_email, pattern_capture, lowercase, unique); test servers only\n\
         version=1.0\n\
         name={NAME}\n\
         classname={CLASSNAME}\n\
         java.version={JAVA_RELEASE}\n\
         elasticsearch.version={es_version}\n"
    )
}

/// Builds the plugin for the server at `home` (once per server version and
/// source text) under `<home>/../xtask-plugins/`; the directory to copy into
/// `plugins/`.
fn build(home: &Path, es_version: &str, java_home: &Path) -> Result<PathBuf> {
    let source = source();
    let text = std::fs::read_to_string(&source)
        .with_context(|| format!("cannot read {}", source.display()))?;
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    let stamp = format!("{es_version} {:016x}\n", hasher.finish());
    let work = home
        .parent()
        .context("the server home has no parent")?
        .join("xtask-plugins")
        .join(NAME);
    let plugin = work.join("plugin");
    let marker = work.join(".xtask-built");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == stamp) {
        return Ok(plugin);
    }
    step!("building the {NAME} plugin for Elasticsearch {es_version}");
    let _ = std::fs::remove_dir_all(&work);
    let classes = work.join("classes");
    std::fs::create_dir_all(&classes)?;
    std::fs::create_dir_all(&plugin)?;
    let bin = java_home.join("bin");
    util::run(
        Command::new(bin.join("javac"))
            .args(["-nowarn", "--release", JAVA_RELEASE, "-d"])
            .arg(&classes)
            .arg("-cp")
            .arg(home.join("lib").join("*"))
            .arg(&source),
    )
    .context("javac failed on the analysis stand-in plugin")?;
    util::run(
        Command::new(bin.join("jar"))
            .arg("--create")
            .arg("--file")
            .arg(plugin.join(format!("{NAME}.jar")))
            .arg("-C")
            .arg(&classes)
            .arg("."),
    )
    .context("jar failed on the analysis stand-in plugin")?;
    std::fs::write(
        plugin.join("plugin-descriptor.properties"),
        descriptor(es_version),
    )?;
    std::fs::write(&marker, stamp)?;
    Ok(plugin)
}

/// A fresh private home at `dest`: `shared_home` hard-linked (copied where
/// links cannot be made), its `plugins/` holding only the stand-in. Returns
/// `dest`.
pub fn private_home(
    shared_home: &Path,
    es_version: &str,
    java_home: &Path,
    dest: &Path,
) -> Result<PathBuf> {
    let plugin = build(shared_home, es_version, java_home)?;
    let _ = std::fs::remove_dir_all(dest);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let linked = util::capture(
        Command::new("cp").arg("-al").arg(shared_home).arg(dest),
        std::time::Duration::from_secs(120),
    )?;
    if !linked.status.success() {
        let _ = std::fs::remove_dir_all(dest);
        util::run(Command::new("cp").arg("-r").arg(shared_home).arg(dest))
            .context("cannot copy the Elasticsearch home")?;
    }
    let plugins = dest.join("plugins");
    let _ = std::fs::remove_dir_all(&plugins);
    let installed = plugins.join(NAME);
    std::fs::create_dir_all(&installed)?;
    for entry in std::fs::read_dir(&plugin)? {
        let entry = entry?;
        std::fs::copy(entry.path(), installed.join(entry.file_name()))?;
    }
    ensure!(
        installed.join(format!("{NAME}.jar")).is_file(),
        "the stand-in plugin's jar is missing in {}",
        installed.display()
    );
    Ok(dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_names_the_server_version_and_class() {
        let d = descriptor("8.19.21");
        for line in [
            "elasticsearch.version=8.19.21",
            "java.version=17",
            "name=xtask-security-analysis",
            "classname=local.xtask.analysis.SecurityAnalysisPlugin",
            "version=1.0",
        ] {
            assert!(d.lines().any(|l| l == line), "{line} not in\n{d}");
        }
        assert!(d.lines().any(|l| l.starts_with("description=")));
    }

    #[test]
    fn the_java_source_is_there_and_names_its_class() {
        let text = std::fs::read_to_string(source()).unwrap();
        assert!(text.contains("package local.xtask.analysis;"));
        assert!(text.contains("public class SecurityAnalysisPlugin"));
    }
}
