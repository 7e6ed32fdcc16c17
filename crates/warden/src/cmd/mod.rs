//! One module per subcommand. Each exposes `Args` (or `Command`) for clap and
//! a `main` that returns the process exit code. Beside them, what several
//! share: [`connection`] (server, admin token, failures and exit codes) and
//! [`table`] (tables sized to the terminal).

pub mod agent;
pub mod bench;
pub mod boundary;
pub mod connection;
pub mod dev;
pub mod emit;
pub mod logs;
pub mod process;
pub mod server;
pub mod table;
pub mod workspace;
