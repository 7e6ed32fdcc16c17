//! The control plane: agent API, auth, idempotent ingest, boundary log lines, HTTP API, metrics.
