//! One module per subcommand. Each exposes `Args` (or `Command`) for clap and
//! a `main` that returns the process exit code. Beside them, what several
//! share: [`failure`] (failures, their messages and exit codes),
//! [`connection`] (which server, with which admin token), [`process`]
//! (signals, logging, the data dir) and [`table`] (tables sized to the
//! terminal).

pub mod admin_events;
pub mod agent;
pub mod bench;
pub mod boundary;
pub mod connection;
pub mod dev;
pub mod emit;
pub mod evidence;
pub mod failure;
pub mod json_log;
pub mod logs;
pub mod process;
pub mod remote_verify;
pub mod server;
pub mod table;
pub mod token;
pub mod workspace;

/// Parses one subcommand's flags on their own (`argv` without the
/// subcommand's name), for its tests.
#[cfg(test)]
pub fn parse_args<A: clap::Args>(argv: &[&str]) -> Result<A, clap::Error> {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli<A: clap::Args> {
        #[command(flatten)]
        args: A,
    }

    Cli::<A>::try_parse_from(std::iter::once("warden").chain(argv.iter().copied()))
        .map(|cli| cli.args)
}
