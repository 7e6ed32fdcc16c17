//! One module per subcommand. Each exposes `Args` (or `Command`) for clap and
//! a `main` that returns the process exit code.

pub mod agent;
pub mod bench;
pub mod dev;
pub mod emit;
pub mod logs;
pub mod server;
pub mod workspace;
