//! `cargo xtask`: the one entry point for development tasks of this workspace.
//! Run `cargo xtask help` for the commands (declared in `cli.rs`).
// A command-line tool: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod cli;
mod compat;
mod connector;
mod demo;
mod docker;
mod e2e;
mod es_embedded;
mod es_standin;
mod fuzz;
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

use anyhow::Result;
use clap::{CommandFactory, Parser};

use cli::{Command, ServicesCommand};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Help => {
            cli::Cli::command().print_long_help()?;
        }
        Command::Services(services) => return services_cmd(services),
        Command::Test(args) => test::cmd(&args)?,
        Command::E2e(args) => e2e::cmd(&args)?,
        Command::Bench(target) => bench::cmd(&target)?,
        Command::Fuzz(args) => fuzz::cmd(&args)?,
        Command::Demo(args) => demo::cmd(&args)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn services_cmd(command: ServicesCommand) -> Result<ExitCode> {
    match command {
        ServicesCommand::Up(servers) => {
            let mut session = services::up(servers.up_options())?;
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
        ServicesCommand::Down => {
            services::down()?;
            Ok(ExitCode::SUCCESS)
        }
        ServicesCommand::Status => Ok(if services::status()? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        ServicesCommand::Guard(args) => {
            services::guard(&args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
