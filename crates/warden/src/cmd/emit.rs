//! `warden emit` (not yet implemented; owned by the issue that builds it).

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> ExitCode {
    eprintln!("warden emit is not available in this build");
    ExitCode::from(2)
}
