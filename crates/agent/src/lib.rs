//! The workspace agent: boundary log socket, spool, forwarder and workspace commands.
