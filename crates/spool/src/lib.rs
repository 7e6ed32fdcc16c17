//! Durable on-disk queue of spooled batches between the agent's socket and its forwarder.
