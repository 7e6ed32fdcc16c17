//! Sandbox-side client: batches audit records and sends them to the agent's socket.
