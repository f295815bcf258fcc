//! `es-connector`: the Elasticsearch source connector's command line.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use connector::state::{open_manager, open_store, require_state};
use connector::{
    ConnectorConfig, ElasticsearchSource, Metrics, MetricsServer, ProgressBar, RunOptions,
};
use serde_json::json;
use state_core::{StateError, StateManager, StateStoreExt, format_timestamp};

#[derive(Parser, Debug)]
#[command(
    name = "es-connector",
    version,
    about = "Move data out of Elasticsearch/OpenSearch with durable, resumable state"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read documents and send them to the configured `[output]`.
    Run {
        /// The connector configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Stop after the first empty poll (caught up) and print a summary.
        #[arg(long)]
        once: bool,
        /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        /// No progress bar, even on a terminal.
        #[arg(long)]
        no_progress: bool,
    },
    /// The other direction: consume an Iggy topic (`[input] kind = "iggy"`, a
    /// consumer group) and bulk-index it into Elasticsearch (`[output]`).
    #[cfg(feature = "iggy")]
    Sink {
        /// The sink configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Stop at the first poll that finds nothing new and print a summary.
        #[arg(long)]
        once: bool,
        /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9465).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// Read every message of the configured Iggy topic and print what it holds
    /// (messages per partition, distinct ids and documents) as JSON.
    #[cfg(feature = "iggy")]
    TopicCheck {
        /// A source configuration with `[output] kind = "iggy"`, or a sink
        /// configuration (`[input] kind = "iggy"`).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Compare what the index holds with what was delivered, per time bucket, up
    /// to the committed cursor: print the buckets that differ (missed,
    /// duplicated, deleted since delivery). Exits with status 1 when documents
    /// were missed. The destination is read back: `[output]` file, elasticsearch
    /// or iggy.
    Audit {
        /// The connector configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Only documents with a timestamp at or after this instant (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only documents with a timestamp before this instant (RFC 3339). Default:
        /// the committed cursor's timestamp.
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Bucket width, e.g. 10s, 1m, 1h.
        #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
        bucket: std::time::Duration,
        /// Examine every bucket document by document, not only those whose counts differ.
        #[arg(long)]
        exact: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration and report the server's flavour and version.
    Check {
        /// The connector configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Work on configuration files.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Inspect and manage the connector's stored state.
    State {
        #[command(subcommand)]
        action: StateAction,
        /// The connector configuration file (TOML).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Rewrite a configuration written the way the connector's documentation
    /// writes it (`query = {` and `state = {` over several lines, no commas) as
    /// valid TOML, in place, comments kept. A file that is valid TOML already is
    /// left as it is.
    Fmt {
        /// The configuration file.
        file: PathBuf,
        /// Change nothing; exit with status 1 if the file would be rewritten.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand, Debug)]
enum StateAction {
    /// Print the stored state document.
    Show,
    /// Write the state document as JSON to stdout or a file.
    Export {
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Replace the stored state with a JSON document (validated first).
    Import {
        /// The JSON document, as written by `export`.
        file: PathBuf,
    },
    /// Start over: store a fresh state (metadata kept).
    Reset,
    /// Figures over every state in the configured store.
    Stats,
    /// Delete states not updated for a while (never this connector's own).
    Cleanup {
        /// Age, e.g. `30d`, `12h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
    /// Copy every state of the configured store into the store of another configuration.
    Migrate {
        /// The configuration whose `state` block names the target store.
        #[arg(long)]
        to: PathBuf,
        /// Replace states the target already has (default: keep them and report them).
        #[arg(long)]
        overwrite: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ES_CONNECTOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run {
            config,
            once,
            metrics_addr,
            no_progress,
        } => run_command(&config, once, metrics_addr, !no_progress).await,
        Command::Check { config } => check_command(&config).await,
        Command::Audit {
            config,
            since,
            until,
            bucket,
            exact,
            json,
        } => {
            let options = connector::audit::AuditOptions {
                since,
                until,
                bucket,
                exact,
            };
            audit_command(&config, &options, json).await
        }
        #[cfg(feature = "iggy")]
        Command::Sink {
            config,
            once,
            metrics_addr,
        } => sink_command(&config, once, metrics_addr).await,
        #[cfg(feature = "iggy")]
        Command::TopicCheck { config } => topic_check_command(&config).await,
        Command::Config {
            action: ConfigAction::Fmt { file, check },
        } => config_fmt_command(&file, check),
        Command::State { action, config } => {
            let Some(config) = config else {
                bail!("--config FILE is required: the configuration names the state store");
            };
            state_command(action, &config).await
        }
    }
}

async fn audit_command(
    path: &Path,
    options: &connector::audit::AuditOptions,
    json: bool,
) -> anyhow::Result<()> {
    let config = ConnectorConfig::from_file(path)?;
    let report = connector::audit::audit(&config, options).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.render());
    }
    if report.missed_any() {
        bail!(
            "{} documents of {} were never delivered to {} (see the buckets above)",
            report.missed,
            report.index,
            report.destination
        );
    }
    Ok(())
}

#[cfg(feature = "iggy")]
async fn topic_check_command(path: &Path) -> anyhow::Result<()> {
    use connector::OutputConfig;
    use connector::config::IggyTarget;
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let (connection, streams) = match ConnectorConfig::from_toml(&text) {
        Ok(ConnectorConfig {
            output: OutputConfig::Iggy(c),
            streams,
            ..
        }) => (c.connection, streams),
        Ok(_) => bail!(
            "{}: [output] is not kind = \"iggy\"; topic-check reads an Iggy topic",
            path.display()
        ),
        Err(source_error) => match connector::sink::SinkConfig::from_toml(&text) {
            Ok(sink) => {
                let connector::sink::InputConfig::Iggy(c) = sink.input;
                (c.connection, sink.streams)
            }
            Err(_) => return Err(source_error.into()),
        },
    };
    let target = IggyTarget::from_streams(&streams)?;
    let census = connector::iggy::topic_census(&connection, &target)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::to_string(&census)?);
    Ok(())
}

#[cfg(feature = "iggy")]
async fn sink_command(
    path: &Path,
    once: bool,
    metrics_addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let config = connector::sink::SinkConfig::from_file(path)?;
    let shutdown = stop_on_signals()?;
    let (metrics, _metrics_server) = serve_metrics(metrics_addr).await?;
    let options = connector::sink::SinkOptions {
        once,
        shutdown: Some(shutdown),
        metrics,
    };
    let summary = connector::sink::run_sink(&config, options).await?;
    println!(
        "done: {} messages in {} batches, {} indexed, {} to the dead-letter file, {:.1}s, {} errors retried",
        summary.messages,
        summary.batches,
        summary.indexed,
        summary.dead_lettered,
        summary.elapsed.as_secs_f64(),
        summary.errors
    );
    for p in &summary.partitions {
        println!(
            "partition {}: consumed up to offset {} of {}",
            p.partition, p.next_offset, p.end_offset
        );
    }
    Ok(())
}

async fn run_command(
    path: &Path,
    once: bool,
    metrics_addr: Option<std::net::SocketAddr>,
    progress: bool,
) -> anyhow::Result<()> {
    let config = ConnectorConfig::from_file(path)?;
    let mut output = config.output.open(&config.streams)?;
    let mut source = ElasticsearchSource::new(0, config.plugin_config.clone());
    let shutdown = stop_on_signals()?;
    let mut options = RunOptions::default().once(once).with_shutdown(shutdown);
    let (metrics, _metrics_server) = serve_metrics(metrics_addr).await?;
    if let Some(metrics) = metrics {
        options = options.with_metrics(metrics);
    }
    if !connector::open_with_retry(&mut source, &mut options).await? {
        eprintln!("stopped before the source could open");
        return Ok(());
    }
    if progress && ProgressBar::stderr_is_terminal() {
        // The backfill's size; without it the bar still shows docs and docs/s.
        let total = match source.count_remaining().await {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "_count failed: progress without ETA");
                None
            }
        };
        options = options.with_observer(Arc::new(ProgressBar::new(total)));
    }
    let outcome = connector::run(&mut source, output.as_mut(), options).await;
    let closed = source.close().await;
    let output_closed = output.close().await;
    let summary = outcome?;
    closed?;
    output_closed?;
    let cursor = summary
        .cursor
        .as_ref()
        .map(|c| serde_json::to_string(&c.sort).unwrap_or_default())
        .unwrap_or_else(|| "none".into());
    let late = if summary.late > 0 {
        format!(", {} of them late (found behind the cursor)", summary.late)
    } else {
        String::new()
    };
    eprintln!(
        "{}: {} documents in {} batches, {:.1}s, {:.0} docs/s, {} errors retried{late}, cursor {cursor}",
        if summary.interrupted {
            "stopped"
        } else {
            "done"
        },
        summary.documents,
        summary.batches,
        summary.elapsed.as_secs_f64(),
        summary.docs_per_second(),
        summary.errors,
    );
    Ok(())
}

/// With `--metrics-addr`: a registry and the endpoint serving it (until dropped).
async fn serve_metrics(
    addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<(Option<Metrics>, Option<MetricsServer>)> {
    let Some(addr) = addr else {
        return Ok((None, None));
    };
    let metrics = Metrics::new();
    let server = MetricsServer::bind(addr, metrics.clone())
        .await
        .with_context(|| format!("--metrics-addr {addr}: cannot listen"))?;
    tracing::info!(addr = %server.local_addr(), "serving metrics at /metrics");
    Ok((Some(metrics), Some(server)))
}

/// Listens for SIGINT and SIGTERM from now on. The first asks the run to stop at
/// the next safe point (the returned receiver turns `true`; the state is saved);
/// the second exits at once, with status 128 + the signal's number.
fn stop_on_signals() -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut signals = Signals::listen()?;
    tokio::spawn(async move {
        let first = signals.next().await;
        eprintln!(
            "shutdown requested ({}): stopping at the next safe point, the state saved; send the signal again to exit at once",
            first.name
        );
        let _ = stop.send(true);
        let second = signals.next().await;
        eprintln!(
            "{} again: exiting at once (status {}); a batch not yet acknowledged is read again at the next start",
            second.name,
            128 + second.number
        );
        std::process::exit(128 + second.number);
    });
    Ok(shutdown)
}

/// A signal that stops the process.
#[derive(Debug, Clone, Copy)]
struct Stop {
    name: &'static str,
    number: i32,
}

/// SIGINT and SIGTERM, registered at [`Signals::listen`] (so none is missed, and
/// none ends the process by its default action from then on).
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    async fn next(&mut self) -> Stop {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Stop { name: "SIGINT", number: 2 },
                _ = self.terminate.recv() => Stop { name: "SIGTERM", number: 15 },
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Stop {
                name: "Ctrl-C",
                number: 2,
            }
        }
    }
}

async fn check_command(path: &Path) -> anyhow::Result<()> {
    let config = ConnectorConfig::from_file(path)?;
    let server = ElasticsearchSource::check(&config.plugin_config).await?;
    let source = ElasticsearchSource::new(0, config.plugin_config.clone());
    out(&format!(
        "configuration {} is valid\nserver {} is {} (version {})\nindex {}, pagination {}, output {:?}",
        path.display(),
        source.url(),
        server.flavor,
        server.version,
        config.plugin_config.index,
        connector::config::pagination_name(config.plugin_config.pagination),
        config.output,
    ))?;
    Ok(())
}

fn config_fmt_command(path: &Path, check: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let shown = path.display().to_string();
    let Some(toml) = connector::config::to_valid_toml(&text, &shown)? else {
        out(&format!("{shown} is valid TOML already; nothing changed"))?;
        return Ok(());
    };
    if check {
        out(&format!(
            "{shown} is not valid TOML: `es-connector config fmt {shown}` would rewrite it as:\n{}",
            toml.trim_end()
        ))?;
        std::process::exit(1);
    }
    replace_file(path, &toml)?;
    out(&format!(
        "rewrote {shown} as valid TOML (comments kept); it now reads:\n{}",
        toml.trim_end()
    ))?;
    Ok(())
}

/// Replaces `path` with `text` at once: a temporary file in the same directory
/// with the same permissions (a configuration may hold a password), fsynced,
/// renamed over it, the directory fsynced.
fn replace_file(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().context("not a file name")?;
    let temp = dir.join(format!(
        ".{}.fmt-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let permissions = std::fs::metadata(path)?.permissions();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.set_permissions(permissions)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        anyhow::anyhow!("cannot rewrite {}: {e}", path.display())
    })
}

async fn manager_for(path: &Path) -> anyhow::Result<StateManager> {
    let config = ConnectorConfig::from_file(path)?;
    require_state(&config.plugin_config)?;
    open_manager(&config.plugin_config.validate()?)
        .await?
        .context("state management is disabled in this configuration")
}

async fn state_command(action: StateAction, config_path: &Path) -> anyhow::Result<()> {
    let manager = manager_for(config_path).await?;
    let id = manager.state_id().clone();
    let backend = manager.store().backend();
    match action {
        StateAction::Show => {
            let stored = match manager.store().load(&id).await {
                Err(StateError::NotFound { .. }) => {
                    bail!(
                        "no state is stored under `{id}` in the {backend} store yet: it is created by the first run, or by `es-connector state import`"
                    )
                }
                other => other?,
            };
            out(&String::from_utf8_lossy(&stored.state.to_pretty_json()))?;
        }
        StateAction::Export { output } => {
            manager.load().await?;
            let text = serde_json::to_string_pretty(&manager.export_state().await?)? + "\n";
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "exported state `{id}` from the {backend} store to {}",
                        path.display()
                    );
                }
                None => out(text.trim_end())?,
            }
        }
        StateAction::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let document: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            manager.import_state(document).await?;
            eprintln!(
                "imported {} as state `{id}` into the {backend} store",
                file.display()
            );
        }
        StateAction::Reset => {
            manager.load().await?;
            manager.reset_state().await?;
            eprintln!("state `{id}` reset in the {backend} store");
        }
        StateAction::Stats => {
            let stats = manager.get_state_stats().await?;
            let stamp = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| format_timestamp(&t));
            let stats = json!({
                "backend": backend,
                "total_states": stats.total_states,
                "oldest_update": stamp(stats.oldest_update),
                "newest_update": stamp(stats.newest_update),
                "total_bytes": stats.total_bytes,
            });
            out(&serde_json::to_string_pretty(&stats)?)?;
        }
        StateAction::Cleanup { older_than } => {
            let cutoff = chrono::Utc::now()
                - chrono::Duration::from_std(older_than).context("--older-than is too large")?;
            let deleted = manager.cleanup_states_before(cutoff).await?;
            out(&format!(
                "deleted {deleted} state(s) not updated since {}",
                format_timestamp(&cutoff)
            ))?;
        }
        StateAction::Migrate { to, overwrite } => {
            let target_config = ConnectorConfig::from_file(&to)?;
            let target_config = target_config.plugin_config.validate()?;
            let target_settings = target_config.state_settings().with_context(|| {
                format!("{} has no enabled state block to migrate to", to.display())
            })?;
            let target = open_store(target_settings).await?;
            let report = manager
                .store()
                .migrate_to(target.as_ref(), overwrite)
                .await?;
            out(&format!(
                "migrated {} state(s) from the {backend} store to the {} store{}",
                report.copied.len(),
                target.backend(),
                if report.skipped.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; kept {} the target already had ({}), use --overwrite to replace them",
                        report.skipped.len(),
                        report
                            .skipped
                            .iter()
                            .map(|id| id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ))?;
        }
    }
    Ok(())
}

/// Prints one line to stdout; a closed pipe (`| head`) ends quietly.
fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => Ok(other?),
    }
}

/// The error and its causes, each cause once: library errors already quote
/// their cause in their own message, so `{:#}` would print it twice.
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}
