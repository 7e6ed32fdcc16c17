//! `warden workspace` (not yet implemented; owned by the issue that builds it).

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List workspaces.
    List,
}

pub fn main(_command: Command) -> ExitCode {
    eprintln!("warden workspace is not available in this build");
    ExitCode::from(2)
}
