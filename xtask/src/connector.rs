//! Building and driving the `es-connector` binary, and writing its config files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::util::{self, Captured, capture};

/// One storage backend of the state CLI and where it keeps its data.
#[derive(Debug, Clone)]
pub enum Storage {
    File { base_path: PathBuf },
    Sled { path: PathBuf },
    Redis { url: String, key_prefix: String },
    Elasticsearch { url: String, index: String },
}

impl Storage {
    pub fn type_name(&self) -> &'static str {
        match self {
            Storage::File { .. } => "file",
            Storage::Sled { .. } => "sled",
            Storage::Redis { .. } => "redis",
            Storage::Elasticsearch { .. } => "elasticsearch",
        }
    }

    fn storage_config(&self) -> String {
        match self {
            Storage::File { base_path } => format!("base_path = {}\n", toml_str(base_path)),
            Storage::Sled { path } => format!("path = {}\n", toml_str(path)),
            Storage::Redis { url, key_prefix } => format!(
                "url = {}\nkey_prefix = {}\n",
                toml_str(url),
                toml_str(key_prefix)
            ),
            Storage::Elasticsearch { url, index } => {
                format!("url = {}\nindex = {}\n", toml_str(url), toml_str(index))
            }
        }
    }
}

fn toml_str(s: impl AsRef<Path>) -> String {
    let s = s.as_ref().to_string_lossy();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The state id of the documented fixture.
pub const STATE_ID: &str = "elasticsearch_logs_connector";

/// Writes a connector config using `storage` to `path`; `extra_storage_lines`
/// are appended to `[plugin_config.state.storage_config]` (for bad-config tests).
pub fn write_config(
    path: &Path,
    es_url: &str,
    storage: &Storage,
    extra_storage_lines: &str,
) -> Result<PathBuf> {
    let text = format!(
        "# Written by cargo xtask.\n\
         [plugin_config]\n\
         url = {url}\n\
         index = \"logs-*\"\n\n\
         [plugin_config.state]\n\
         enabled = true\n\
         storage_type = \"{kind}\"\n\
         state_id = \"{STATE_ID}\"\n\n\
         [plugin_config.state.storage_config]\n\
         {storage}{extra_storage_lines}",
        url = toml_str(es_url),
        kind = storage.type_name(),
        storage = storage.storage_config(),
    );
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// The built `es-connector` binary.
#[derive(Debug, Clone)]
pub struct Connector {
    pub bin: PathBuf,
    /// Print each command line on stderr before running it.
    pub echo: bool,
}

impl Connector {
    /// `cargo build -p connector --bin es-connector`.
    pub fn build() -> Result<Connector> {
        if !util::root().join("crates").join("connector").exists() {
            bail!(
                "crates/connector is not in the workspace yet: the es-connector binary is needed \
                 for this command"
            );
        }
        util::run(util::cargo().args(["build", "-p", "connector", "--bin", "es-connector"]))
            .context("building es-connector failed")?;
        let bin = util::target_dir().join("debug").join("es-connector");
        if !bin.is_file() {
            bail!("the build succeeded but {} does not exist", bin.display());
        }
        Ok(Connector { bin, echo: true })
    }

    /// Runs `es-connector state <args...>` and captures its output.
    pub fn state(&self, args: &[&str]) -> Result<Captured> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("state").args(args).current_dir(util::root());
        let root = format!("{}/", util::root().display());
        crate::step!(
            "  $ es-connector state {}",
            args.join(" ").replace(&root, "")
        );
        capture(&mut cmd, Duration::from_secs(120))
    }

    /// Like [`Connector::state`], but an error unless it exits successfully.
    pub fn state_ok(&self, args: &[&str]) -> Result<Captured> {
        let out = self.state(args)?;
        if !out.status.success() {
            bail!(
                "`es-connector state {}` failed ({}):\n{}",
                args.join(" "),
                out.status,
                out.all().trim()
            );
        }
        Ok(out)
    }
}
