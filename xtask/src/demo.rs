//! `cargo xtask demo`: the README's one-command tour. For now the state CLI:
//! import the documented state, show it, move it between backends, count it.

use anyhow::{Result, bail};

use crate::connector::{Connector, Storage, write_config};
use crate::net;
use crate::services::{Session, UpOptions, env_file};
use crate::util::{self, Captured};

pub fn cmd(args: &[String]) -> Result<()> {
    let mut opts = UpOptions::default();
    let mut keep = false;
    for arg in args {
        match arg.as_str() {
            "--docker" => opts.docker = true,
            "--keep-services" => keep = true,
            other => bail!("demo: unknown option `{other}`"),
        }
    }
    let mut session = Session::start(opts, true)?;
    let mut connector = Connector::build()?;
    // The demo prints each command line itself, on stdout.
    connector.echo = false;
    let result = run(&session, &connector);
    if keep {
        session.keep();
        println!(
            "\nThe services are still running: `. {}` for their URLs, `cargo xtask services \
             down` to stop them.",
            env_file().display()
        );
    }
    session.finish()?;
    result
}

fn run(session: &Session, connector: &Connector) -> Result<()> {
    let es_url = session.get("ES_URL").unwrap_or_default().to_string();
    let redis_url = session.get("REDIS_URL").unwrap_or_default().to_string();
    let run_id = util::run_id();
    let rel_dir = format!("target/xtask/demo/{run_id}");
    let dir = util::root().join(&rel_dir);
    std::fs::create_dir_all(&dir)?;
    let fixture = "crates/state-core/tests/fixtures/documented_state.json";

    let stores = [
        (
            "file",
            Storage::File {
                base_path: dir.join("connector_states"),
            },
        ),
        (
            "redis",
            Storage::Redis {
                url: redis_url.clone(),
                key_prefix: format!("demo:{run_id}:connector_states:"),
            },
        ),
        (
            "elasticsearch",
            Storage::Elasticsearch {
                url: es_url.clone(),
                index: format!("demo-connector-states-{run_id}"),
            },
        ),
    ];
    let mut configs = Vec::new();
    for (name, storage) in &stores {
        write_config(&dir.join(format!("{name}.toml")), &es_url, storage, "")?;
        configs.push(format!("{rel_dir}/{name}.toml"));
    }
    let [file_cfg, redis_cfg, es_cfg] = &configs[..] else {
        bail!("demo: expected three configs");
    };

    println!("es-state demo: one connector state, three storage backends.\n");
    println!("Elasticsearch: {es_url}   Redis: {redis_url}   configs: {rel_dir}/*.toml\n");
    println!("1. Import the documented state into file storage:");
    shown(connector, &["import", fixture, "--config", file_cfg])?;
    println!("\n2. Show it:");
    shown(connector, &["show", "--config", file_cfg])?;
    println!("\n3. Migrate it to Redis and to Elasticsearch:");
    shown(
        connector,
        &["migrate", "--to", redis_cfg, "--config", file_cfg],
    )?;
    shown(
        connector,
        &["migrate", "--to", es_cfg, "--config", file_cfg],
    )?;
    println!("\n4. Statistics of each storage:");
    for cfg in &configs {
        shown(connector, &["stats", "--config", cfg])?;
    }
    println!(
        "\nWhat happened: `state import` validated the documented JSON and stored it under its \
         id `elasticsearch_logs_connector`\nas {rel_dir}/connector_states/<id>.json. \
         `state migrate` read it back and wrote it, unchanged, to Redis (key\nprefix \
         demo:{run_id}:connector_states:) and to the Elasticsearch index \
         demo-connector-states-{run_id}, checking each copy.\n`state stats` then counts one \
         state in each. A connector configured with any of these three files resumes from \
         the\nsame cursor; `cargo xtask e2e` checks the same round trip through sled too."
    );

    // Leave no demo data in services that outlive the demo.
    if let (_, Storage::Redis { key_prefix, .. }) = &stores[1] {
        let _ = net::redis_delete_prefix(&redis_url, key_prefix);
    }
    if let (_, Storage::Elasticsearch { index, .. }) = &stores[2] {
        let _ = net::http("DELETE", &es_url, &format!("/{index}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Runs a state command, printing the command line and its output.
fn shown(connector: &Connector, args: &[&str]) -> Result<Captured> {
    println!("$ es-connector state {}", args.join(" "));
    let out = connector.state_ok(args)?;
    for text in [&out.stdout, &out.stderr] {
        if !text.trim().is_empty() {
            println!("{}", text.trim_end());
        }
    }
    Ok(out)
}
