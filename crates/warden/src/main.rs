//! `warden`: one binary for the control plane, the workspace agent, the
//! sandbox-side `emit` tool and the operator commands. Each subcommand lives
//! in its own module under `cmd/`; this file only parses and dispatches.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Carries boundary audit records from sandboxes to a control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (agent API, storage, boundary log lines, query API).
    Server(cmd::server::Args),
    /// Run the workspace agent (boundary log socket, spool, forwarder, commands).
    Agent(cmd::agent::Args),
    /// Send audit records from JSON lines on stdin to the agent's socket.
    Emit(cmd::emit::Args),
    /// Register and manage workspaces on a control plane.
    #[command(subcommand)]
    Workspace(cmd::workspace::Command),
    /// Create, list and revoke named admin and auditor tokens.
    #[command(subcommand)]
    Token(cmd::token::Command),
    /// Show the admin event log (who created, deleted, rotated, revoked what).
    AdminEvents(cmd::admin_events::Args),
    /// Query stored boundary records.
    Logs(cmd::logs::Args),
    /// Run a server, an agent and a demo producer on embedded defaults.
    Dev(cmd::dev::Args),
    /// Measure records/s and latency through client, agent, spool and server.
    Bench(cmd::bench::Args),
    /// Fence in a command: an egress proxy that allows only what the rules
    /// allow and audits every request.
    Boundary(cmd::boundary::Args),
    /// Check the record chain and its signed checkpoints (offline).
    Verify(cmd::evidence::VerifyArgs),
    /// Write records, the chain links and checkpoints to a bundle that
    /// verifies offline.
    Export(cmd::evidence::ExportArgs),
    /// Signed checkpoints of the record chain.
    #[command(subcommand)]
    Checkpoint(cmd::evidence::CheckpointCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let argv: Vec<String> = std::env::args().collect();
            if err.use_stderr() && cmd::json_log::wants_json(&argv) {
                // In JSON mode every stderr line is JSON, usage errors too.
                eprint!("{}", cmd::json_log::usage_error(&err.render().to_string()));
                return ExitCode::from(err.exit_code() as u8);
            }
            let _ = err.print();
            // clap uses 0 for --help/--version and 2 for usage errors.
            return ExitCode::from(err.exit_code() as u8);
        }
    };
    match cli.command {
        Command::Server(args) => cmd::server::main(args),
        Command::Agent(args) => cmd::agent::main(args),
        Command::Emit(args) => cmd::emit::main(args),
        Command::Workspace(command) => cmd::workspace::main(command),
        Command::Token(command) => cmd::token::main(command),
        Command::AdminEvents(args) => cmd::admin_events::main(args),
        Command::Logs(args) => cmd::logs::main(args),
        Command::Dev(args) => cmd::dev::main(args),
        Command::Bench(args) => cmd::bench::main(args),
        Command::Boundary(args) => cmd::boundary::main(args),
        Command::Verify(args) => cmd::evidence::verify_main(args),
        Command::Export(args) => cmd::evidence::export_main(args),
        Command::Checkpoint(command) => cmd::evidence::checkpoint_main(command),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every flag of every subcommand, with the path of subcommands to it.
    fn flags(command: &clap::Command, path: &str, out: &mut Vec<(String, clap::Arg)>) {
        for arg in command.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !arg.is_positional() && !builtin {
                out.push((path.to_owned(), arg.clone()));
            }
        }
        for sub in command.get_subcommands() {
            flags(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_flag_reads_an_environment_variable() {
        let mut all = Vec::new();
        flags(&Cli::command(), "warden", &mut all);
        assert!(all.len() > 60, "found only {} flags", all.len());
        let missing: Vec<String> = all
            .iter()
            .filter(|(_, arg)| arg.get_env().is_none())
            .map(|(path, arg)| format!("{path} --{}", arg.get_id()))
            .collect();
        assert!(missing.is_empty(), "flags without a variable: {missing:?}");
        // And each variable names one setting: where two flags share one,
        // they are the same setting in sibling subcommands.
        for (path, arg) in &all {
            let env = arg.get_env().unwrap().to_string_lossy();
            assert!(
                env.starts_with("WARDEN_") || env.starts_with("CODER_"),
                "{path} --{}: {env}",
                arg.get_id()
            );
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
