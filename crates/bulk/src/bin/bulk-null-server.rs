//! `bulk-null-server [--addr 127.0.0.1:PORT] [--threads N]`: runs a
//! [`NullBulkServer`] until killed. Prints exactly one line,
//! `listening on http://127.0.0.1:PORT`, once it accepts connections.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use bulk::testkit::NullBulkServer;

const USAGE: &str = "usage: bulk-null-server [--addr 127.0.0.1:PORT] [--threads N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulk-null-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut threads: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match name.as_str() {
            "--addr" => {
                let v = value()?;
                addr = v
                    .parse()
                    .map_err(|e| format!("--addr {v}: {e} (expected IP:PORT)"))?;
            }
            "--threads" => {
                let v = value()?;
                threads = Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("--threads {v}: expected a positive number"))?,
                );
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        runtime.worker_threads(n);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let server = NullBulkServer::start_on(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", server.url()).map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        drop(out);
        std::future::pending::<()>().await;
        Ok(())
    })
}
