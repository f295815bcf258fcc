//! `cargo xtask`: the one entry point for development tasks of this workspace.
//! Run `cargo xtask help` for the commands.
// A command-line tool: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod compat;
mod connector;
mod demo;
mod docker;
mod e2e;
mod es_embedded;
mod es_standin;
mod iggy_server;
mod native;
mod net;
mod osmem;
mod redis_server;
mod search_server;
mod services;
mod test;
mod util;

use std::process::ExitCode;

use anyhow::{Result, bail};

const HELP: &str = "\
cargo xtask — development tasks for this workspace

USAGE: cargo xtask <command> [options]

COMMANDS
  services up [--docker] [--servers LINES]
                           start the test services (by default Elasticsearch 9.5, OpenSearch 3.6
                           and Redis) on free 127.0.0.1 ports and write target/xtask/services.env
  services down            stop what `services up` started and remove the env file
  services status          each service, its URL and whether it answers (exit 1 if one does not)
  test [--docker] [--servers LINES | --matrix] [--no-e2e] [-- <cargo test args>]
                           services up, then per Elasticsearch-flavoured server (ES_URL pointing
                           at it): `cargo test --workspace --all-features` (later servers: only
                           the packages whose tests read ES_URL) and the e2e scenarios; then
                           services down (also on failure). --matrix: every line, and
                           docs/compatibility.md written from the run
  e2e [--docker] [--list] [SCENARIO...]
                           build es-connector and run end-to-end scenarios with it
  bench <target> [--docker]
                           run benchmarks against the services and print one table;
                           targets: state, bulk, source
  demo [source|state] [--keep-services] [--docker]
                           source (default): index 100k generated logs with shared timestamps,
                           read them all with `es-connector run --once`, then 1000 new ones;
                           state: a tour of the es-connector state CLI across backends
  help                     this text

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
  root). They run in the background until `services down`, which ends each one's whole process
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
  then fails instead of skipping.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<ExitCode> {
    let Some(command) = args.first() else {
        print!("{HELP}");
        return Ok(ExitCode::FAILURE);
    };
    let rest = &args[1..];
    match command.as_str() {
        "help" | "--help" | "-h" => print!("{HELP}"),
        "services" => return services_cmd(rest),
        "test" => test::cmd(rest)?,
        "e2e" => e2e::cmd(rest)?,
        "bench" => bench::cmd(rest)?,
        "demo" => demo::cmd(rest)?,
        other => bail!("unknown command `{other}`; `cargo xtask help` lists the commands"),
    }
    Ok(ExitCode::SUCCESS)
}

fn services_cmd(args: &[String]) -> Result<ExitCode> {
    match args.first().map(String::as_str) {
        Some("up") => {
            let mut opts = services::UpOptions::default();
            let mut i = 1;
            while i < args.len() {
                if !opts.parse_arg(args, &mut i)? {
                    bail!("services up: unknown option `{}`", args[i]);
                }
                i += 1;
            }
            let mut session = services::up(opts)?;
            session.keep();
            if !session.started_any() {
                step!("nothing to start: all services were already up");
            }
            step!(
                "endpoints written to {}; use them with:",
                services::env_file().display()
            );
            println!(". {}", services::env_file().display());
            Ok(ExitCode::SUCCESS)
        }
        Some("down") => {
            services::down()?;
            Ok(ExitCode::SUCCESS)
        }
        Some("status") => Ok(if services::status()? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Some("guard") => {
            services::guard(&args[1..])?;
            Ok(ExitCode::SUCCESS)
        }
        _ => bail!(
            "usage: cargo xtask services up [--docker] [--servers es7,es8,os2,os3,osmem] | down | \
             status"
        ),
    }
}
