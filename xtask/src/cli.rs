//! Every command and option of `cargo xtask`, declared once: parsing, `--help`
//! and the errors for a wrong argument all come from here.

use clap::{Args, Parser, Subcommand};

use crate::search_server::{self, Line};
use crate::services::UpOptions;

/// What `cargo xtask help` prints after the commands.
const AFTER_HELP: &str = "\
SERVICES
  Server lines (--servers, comma-separated): es7 (Elasticsearch 7.17.29), es8 (8.19.21), os2
  (OpenSearch 2.19.6), os3 (3.6.0): the vendors' integ-test zips from Maven Central, fetched with
  `mvn` into target/xtask/dist/, unpacked under target/xtask/servers/; es9 (9.5.3): the server's
  jars from Maven Central in one JVM with our launcher (docs/test-servers.md). They run on a JDK
  found in JAVA_HOME or /usr/lib/jvm (17 for es7/es8/os2, 21+ for es9/os3), as the system user
  `es-state-xtask` when run as root (created with useradd; the servers refuse root); osmem:
  `osmem-server` (PyPI osmem-server==0.1.6, an in-memory emulator of the OpenSearch REST API) in a
  venv under ~/.cache/es-state/ (override: XTASK_OSMEM_VENV, XTASK_PYTHON, OSMEM_SERVER_BIN).
  Default: es9 and os3. The env file names each line's URL (ES9_URL, OS3_URL, ...), ES_URL (the
  first Elasticsearch line) and OPENSEARCH_URL (the first OpenSearch line). Redis is
  `redis-server` (REDIS_SERVER_BIN, else PATH; installed with apt-get when missing and run as
  root). An Iggy server runs when IGGY_SERVER_BIN names an iggy-server binary (docs/iggy.md).
  They run in the background until `services down`, which ends each one's whole process
  group; logs and pid files are in target/xtask/services/.
  --docker uses docker/compose.yml instead (Elasticsearch 8 on 9200, OpenSearch on 9201,
  Redis on 6379, Iggy on 8090) and needs a running Docker engine.
  External services (e.g. CI service containers): set XTASK_EXTERNAL_SERVICES=1 together with
  ES_URL=http://host:port and/or REDIS_URL=redis://host:port; those are checked and used as
  they are (never started or stopped); a service whose variable is unset is started natively.
  Commands that bring services up stop afterwards only what they started themselves.

ENVIRONMENT FOR TESTS
  `. target/xtask/services.env` exports ES_URL, OPENSEARCH_URL, REDIS_URL and REDIS_SERVER_BIN.
  `cargo xtask test` also sets XTASK_REQUIRE_SERVICES=1: a test whose service variable is missing
  then fails instead of skipping.";

/// cargo xtask — development tasks for this workspace.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    after_help = AFTER_HELP,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start, stop or check the test services.
    #[command(subcommand)]
    Services(ServicesCommand),
    /// Services up, then per Elasticsearch-flavoured server (ES_URL pointing at it):
    /// `cargo test --workspace --all-features` (later servers: only the packages whose
    /// tests read ES_URL) and the e2e scenarios; then services down (also on failure).
    Test(TestArgs),
    /// Build es-connector and run end-to-end scenarios with it.
    E2e(E2eArgs),
    /// Run benchmarks against the services and print their tables.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Build the cargo-fuzz targets of fuzz/ (nightly; installs cargo-fuzz when
    /// missing) and run each for a bounded time, then print executions, coverage,
    /// corpus and crashes per target (docs/fuzzing.md).
    Fuzz(FuzzArgs),
    /// A guided run: `source` (default) indexes 100k generated logs with shared
    /// timestamps, reads them with `es-connector run --once`, then 1000 new ones;
    /// `state` tours the es-connector state CLI across backends.
    Demo(DemoArgs),
    /// This text.
    Help,
}

#[derive(Debug, Subcommand)]
pub enum ServicesCommand {
    /// Start the test services (by default Elasticsearch 9.5, OpenSearch 3.6 and Redis)
    /// on free 127.0.0.1 ports and write target/xtask/services.env.
    Up(ServerArgs),
    /// Stop what `services up` started and remove the env file.
    Down,
    /// Each service, its URL and whether it answers (exit 1 if one does not).
    Status,
    /// Internal: started by `services up` for a command that brings services up; it
    /// waits for that command (`--parent`) to end and then stops `--kinds`.
    Guard(GuardArgs),
}

/// Which servers a command brings up.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// Use docker/compose.yml (needs a running Docker engine).
    #[arg(long)]
    pub docker: bool,
    /// Server lines, comma-separated: es7, es8, es9, os2, os3, osmem (default: es9,os3).
    #[arg(long, value_name = "LINES", value_parser = parse_lines)]
    pub servers: Option<Lines>,
}

/// Server lines named on the command line.
#[derive(Debug, Clone)]
pub struct Lines(pub Vec<&'static Line>);

impl ServerArgs {
    pub fn up_options(&self) -> UpOptions {
        UpOptions {
            docker: self.docker,
            servers: self.servers.clone().map(|l| l.0).unwrap_or_default(),
            ..UpOptions::default()
        }
    }
}

fn parse_lines(list: &str) -> Result<Lines, String> {
    search_server::parse_set(list)
        .map(Lines)
        .map_err(|e| format!("{e:#}"))
}

#[derive(Debug, Args)]
pub struct GuardArgs {
    /// The process whose end stops the services.
    #[arg(long, value_name = "PID")]
    pub parent: u32,
    /// The services to stop, comma-separated.
    #[arg(long, value_name = "KINDS", default_value = "")]
    pub kinds: String,
    /// They are docker compose services.
    #[arg(long)]
    pub docker: bool,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub servers: ServerArgs,
    /// Every server line, and docs/compatibility.md written from the run.
    #[arg(long, conflicts_with = "servers")]
    pub matrix: bool,
    /// Skip the e2e scenarios.
    #[arg(long)]
    pub no_e2e: bool,
    /// Arguments for `cargo test`, after `--` (e.g. `cargo xtask test -- --nocapture`).
    #[arg(last = true, value_name = "CARGO TEST ARGS")]
    pub cargo_test: Vec<String>,
}

impl TestArgs {
    pub fn up_options(&self) -> UpOptions {
        let mut opts = self.servers.up_options();
        if self.matrix {
            opts.servers = search_server::LINES.iter().collect();
            opts.matrix = true;
        }
        opts
    }
}

#[derive(Debug, Args)]
pub struct E2eArgs {
    /// Use docker/compose.yml for the services.
    #[arg(long)]
    pub docker: bool,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// The scenarios to run (all when none is named).
    #[arg(value_name = "SCENARIO")]
    pub scenarios: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Every state backend's save/load against its raw floor (file, sled, redis,
    /// elasticsearch).
    State(DockerArg),
    /// The bulk processor against go-elasticsearch, olivere/elastic, elasticsearch-java,
    /// elasticsearch-py, opensearch-py and a raw replay.
    Bulk(BulkBenchArgs),
    /// es-connector reading an index (point in time, scroll, slices) against raw
    /// loops and the official Python clients, on real Elasticsearch and OpenSearch.
    Source(SourceBenchArgs),
    /// The state a late_window keeps with N documents in the window (default 1000000).
    LateWindow(DocsArgs),
    /// The bulk processor with fixed workers against adaptive concurrency, on a
    /// private Elasticsearch with a one-thread write pool and a small queue (429s);
    /// writes docs/benchmarks/adaptive.md.
    Adaptive(AdaptiveBenchArgs),
    /// The criterion micro-benchmarks of the hot paths (NDJSON requests and `_bulk`
    /// answers, search pages, state documents, messages), as one table.
    Micro(MicroArgs),
}

#[derive(Debug, Args)]
pub struct DockerArg {
    /// Use docker/compose.yml for the services.
    #[arg(long)]
    pub docker: bool,
}

#[derive(Debug, Args)]
pub struct BulkBenchArgs {
    /// Use docker/compose.yml for the services.
    #[arg(long)]
    pub docker: bool,
    /// Rounds, alternating which contender runs first (an odd number is made even).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,
    /// A tenth of the documents and one round: a quick look, not a measurement.
    #[arg(long)]
    pub quick: bool,
    /// Also draw docs/s as SVG bar charts (docs/benchmarks/bulk-<target>.svg).
    #[arg(long)]
    pub plot: bool,
}

/// `bench adaptive`'s default write queue of the private node.
pub const DEFAULT_ADAPTIVE_QUEUE: u32 = 4;
/// `bench adaptive`'s default worker count (fixed) and maximum (adaptive).
pub const DEFAULT_ADAPTIVE_MAX: usize = 8;

#[derive(Debug, Args)]
pub struct AdaptiveBenchArgs {
    /// Rounds, each running both modes, alternating which goes first (an odd
    /// number is made even). Default 4 (2 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,
    /// Documents per run. Default 200000 (20000 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub docs: Option<u64>,
    /// The node's thread_pool.write.queue_size (its write pool has one thread).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ADAPTIVE_QUEUE)]
    pub queue_size: u32,
    /// Workers of the fixed mode and the maximum of the adaptive one.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ADAPTIVE_MAX, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub max: usize,
    /// A tenth of the documents and two rounds: a quick look, not a measurement.
    #[arg(long)]
    pub quick: bool,
}

#[derive(Debug, Args)]
pub struct MicroArgs {
    /// Shorter warm-up and measurement (1 s and 2 s): a quick look.
    #[arg(long)]
    pub quick: bool,
}

#[derive(Debug, Args)]
pub struct SourceBenchArgs {
    /// Use docker/compose.yml for the services.
    #[arg(long)]
    pub docker: bool,
    /// Documents to read (100000; --quick: 10000).
    #[arg(long, value_name = "N")]
    pub docs: Option<u64>,
    /// Rounds, alternating the contenders' order (4; --quick: 2; an odd number is made even).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,
    /// A tenth of the documents and two rounds: checks that everything runs, not a measurement.
    #[arg(long)]
    pub quick: bool,
    /// Also draw docs/s as SVG bar charts (docs/benchmarks/source-<product>.svg).
    #[arg(long)]
    pub plot: bool,
}

#[derive(Debug, Args)]
pub struct DocsArgs {
    /// Use docker/compose.yml for the services.
    #[arg(long)]
    pub docker: bool,
    /// Documents to read (the target's default otherwise).
    #[arg(long, value_name = "N")]
    pub docs: Option<u64>,
}

#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// How long each target runs (libFuzzer's -max_total_time).
    #[arg(long, value_name = "N", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// Run only this target (repeatable; default: every target in fuzz/fuzz_targets/).
    #[arg(long = "target", value_name = "T")]
    pub targets: Vec<String>,
    /// Go on after a crash (libFuzzer's fork mode, ignoring crashes, hangs and
    /// out-of-memory inputs, each still saved): for long runs.
    #[arg(long)]
    pub keep_going: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Which demo.
    #[arg(value_enum, default_value = "source")]
    pub which: DemoKind,
    /// Leave the services running afterwards.
    #[arg(long)]
    pub keep_services: bool,
    /// Use docker/compose.yml for the services.
    #[arg(long)]
    pub docker: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoKind {
    Source,
    State,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_declaration_is_consistent() {
        Cli::command().debug_assert();
    }

    /// What the hand-written help once left out is in the help now.
    #[test]
    fn the_help_names_every_option() {
        let mut cli = Cli::command();
        let mut all = String::new();
        for path in [
            vec!["bench", "bulk"],
            vec!["bench", "source"],
            vec!["bench", "adaptive"],
            vec!["services"],
            vec!["test"],
            vec!["fuzz"],
        ] {
            let mut cmd = &mut cli;
            for name in path {
                cmd = cmd
                    .find_subcommand_mut(name)
                    .unwrap_or_else(|| panic!("{name}"));
            }
            all.push_str(&cmd.render_long_help().to_string());
        }
        for option in [
            "--rounds",
            "--quick",
            "--docs",
            "guard",
            "--servers",
            "--no-e2e",
            "--seconds",
            "--target",
            "--queue-size",
            "--max",
        ] {
            assert!(all.contains(option), "{option} is not in the help:\n{all}");
        }
    }

    #[test]
    fn arguments_parse_into_their_commands() {
        let cli = Cli::try_parse_from(["xtask", "bench", "bulk", "--rounds", "3", "--quick"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            cli.command,
            Command::Bench(BenchCommand::Bulk(BulkBenchArgs {
                rounds: Some(3),
                quick: true,
                docker: false,
                plot: false
            }))
        ));
        let cli =
            Cli::try_parse_from(["xtask", "bench", "adaptive", "--quick", "--queue-size", "2"])
                .unwrap_or_else(|e| panic!("{e}"));
        let Command::Bench(BenchCommand::Adaptive(adaptive)) = cli.command else {
            panic!("not bench adaptive")
        };
        assert_eq!(
            (
                adaptive.quick,
                adaptive.queue_size,
                adaptive.max,
                adaptive.rounds
            ),
            (true, 2, DEFAULT_ADAPTIVE_MAX, None)
        );
        let cli = Cli::try_parse_from(["xtask", "test", "--servers", "es9", "--", "--nocapture"])
            .unwrap_or_else(|e| panic!("{e}"));
        let Command::Test(args) = cli.command else {
            panic!("not test")
        };
        assert_eq!(args.cargo_test, ["--nocapture"]);
        assert_eq!(args.up_options().servers.len(), 1);
        let cli = Cli::try_parse_from([
            "xtask",
            "fuzz",
            "--seconds",
            "15",
            "--target",
            "config",
            "--target",
            "state_es",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Command::Fuzz(fuzz) = cli.command else {
            panic!("not fuzz")
        };
        assert_eq!((fuzz.seconds, fuzz.targets.len()), (15, 2));
        let wrong = Cli::try_parse_from(["xtask", "fuzz", "--seconds", "0"])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("--seconds"), "{wrong}");
        let wrong = Cli::try_parse_from(["xtask", "bench", "bulk", "--rounds", "0"])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("--rounds"), "{wrong}");
        let wrong = Cli::try_parse_from(["xtask", "services", "up", "--servers", "es1"])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("es1"), "{wrong}");
    }
}
