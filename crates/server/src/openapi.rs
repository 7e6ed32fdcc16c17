//! The OpenAPI 3 document of the HTTP API, served at
//! `/api/v1/openapi.json` (without a token: it holds no data) and checked in
//! as `crates/server/openapi.json`. A test keeps the two equal and checks
//! that every route of [`crate::http::router`] is described here, so a
//! route added without its description fails the build's tests.
//!
//! Written out by hand with `serde_json::json!`: the bodies are the types
//! of [`warden_api::workspaces`] and [`warden_api::records`], whose doc comments
//! these descriptions repeat.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use warden_api::records::{DEFAULT_LIMIT, DEFAULT_TOP_HOSTS, MAX_GAPS, MAX_LIMIT, MAX_TOP_HOSTS};

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";

/// The document as served: pretty-printed, with a final newline (the form
/// of the checked-in file).
pub fn text() -> &'static str {
    static TEXT: LazyLock<String> = LazyLock::new(|| {
        // Serializing a `Value` cannot fail.
        let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
        text.push('\n');
        text
    });
    &TEXT
}

/// The route that serves the document; it needs no state, so it fits any
/// router.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(
        PATH,
        get(|| async { ([(header::CONTENT_TYPE, "application/json")], text()).into_response() }),
    )
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_body(name: &str) -> Value {
    json!({ "application/json": { "schema": schema(name) } })
}

fn ok(description: &str, body: &str) -> Value {
    json!({ "description": description, "content": json_body(body) })
}

fn error(description: &str) -> Value {
    ok(description, "Error")
}

/// The responses every admin call can give besides its own.
fn with_common_errors(mut responses: Value) -> Value {
    responses["401"] = json!({ "$ref": "#/components/responses/Unauthorized" });
    responses["403"] = json!({ "$ref": "#/components/responses/Forbidden" });
    responses["503"] = error("The control plane is shutting down.");
    responses["500"] = error("Storage failure; the control plane logs the cause.");
    responses
}

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": { "type": "string" } })
}

fn string() -> Value {
    json!({ "type": "string" })
}

fn time_param(name: &str, what: &str) -> Value {
    query_param(
        name,
        &format!(
            "{what}: an RFC 3339 timestamp (2025-12-08T20:58:46Z) or a duration before now (15m, 2h, 7d, 1h30m). Times are event times, or receive times for records without one."
        ),
        string(),
    )
}

fn limit_param(what: &str) -> Value {
    query_param(
        "limit",
        &format!("{what} per page, 1 to {MAX_LIMIT}."),
        json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT }),
    )
}

/// The filters the record list and the stream share.
fn filter_params() -> Vec<Value> {
    vec![
        query_param(
            "workspace",
            "A live workspace, by name (404 when there is none).",
            string(),
        ),
        query_param(
            "workspace_id",
            "A workspace by id, deleted ones included. Not with workspace.",
            json!({ "type": "string", "format": "uuid" }),
        ),
        query_param("owner", "The owner of the record's workspace.", string()),
        query_param(
            "agent",
            "The name of the agent that delivered the record.",
            string(),
        ),
        query_param(
            "decision",
            "The boundary's decision.",
            json!({ "type": "string", "enum": ["allow", "deny"] }),
        ),
        query_param("session", "The client session id.", string()),
        time_param("since", "Records at or after this time"),
        time_param("until", "Records before this time"),
        query_param(
            "url_contains",
            "A case-sensitive substring of the URL (no wildcards).",
            string(),
        ),
        query_param(
            "method",
            "The HTTP method, exactly as sent (case-sensitive).",
            string(),
        ),
        query_param(
            "conflict",
            "Only records flagged as conflicting (true) or only the others (false).",
            json!({ "type": "string", "enum": ["true", "false"] }),
        ),
    ]
}

fn paths() -> Value {
    let mut list_params = filter_params();
    list_params.push(limit_param("Records"));
    list_params.push(query_param(
        "cursor",
        "The next of the previous page.",
        string(),
    ));
    let mut stream_params = filter_params();
    stream_params.push(query_param(
        "after",
        "Resume after this cursor (a record event's id, or a head). Without it (and without Last-Event-ID) the stream starts with records committed from now on.",
        string(),
    ));
    stream_params.push(json!({
        "name": "Last-Event-ID", "in": "header", "required": false,
        "description": "Sent by an EventSource that reconnects: resume after this cursor (wins over after).",
        "schema": string()
    }));
    let workspace_param = path_param(
        "name",
        "A live workspace's name, or any workspace's id (deleted workspaces keep their records).",
    );
    json!({
        "/healthz": { "get": {
            "summary": "Health: 200 when the store answers.",
            "operationId": "healthz",
            "security": [],
            "responses": {
                "200": { "description": "The store answers.", "content": { "text/plain": { "schema": string() } } },
                "503": { "description": "The store does not answer.", "content": { "text/plain": { "schema": string() } } }
            }
        }},
        "/metrics": { "get": {
            "summary": "Prometheus metrics (OpenMetrics text).",
            "operationId": "metrics",
            "security": [],
            "responses": {
                "200": { "description": "The metrics: OpenMetrics text when the Accept header asks for it, Prometheus text format 0.0.4 otherwise.", "content": { "application/openmetrics-text": { "schema": string() }, "text/plain": { "schema": string() } } }
            }
        }},
        PATH: { "get": {
            "summary": "This document.",
            "operationId": "openapi",
            "security": [],
            "responses": { "200": { "description": "The OpenAPI document.", "content": { "application/json": { "schema": { "type": "object" } } } } }
        }},
        "/api/v1/workspaces": {
            "get": {
                "summary": "Live workspaces, by name (never their tokens).",
                "operationId": "listWorkspaces",
                "responses": with_common_errors(json!({ "200": ok("The workspaces.", "WorkspaceList") }))
            },
            "post": {
                "summary": "Register a workspace with one agent; the answer holds the agent's token, shown once.",
                "operationId": "createWorkspace",
                "requestBody": { "required": true, "content": json_body("CreateWorkspace") },
                "responses": with_common_errors(json!({
                    "201": ok("Registered.", "WorkspaceToken"),
                    "400": error("Invalid body, name, owner or script."),
                    "409": error("A live workspace has the name.")
                }))
            }
        },
        "/api/v1/workspaces/{name}": {
            "delete": {
                "summary": "Delete a workspace: its agent is revoked, its records stay, its name is free again.",
                "operationId": "deleteWorkspace",
                "parameters": [path_param("name", "The workspace's name.")],
                "responses": with_common_errors(json!({
                    "200": ok("Deleted.", "WorkspaceInfo"),
                    "404": error("No live workspace has the name.")
                }))
            }
        },
        "/api/v1/workspaces/{name}/rotate-token": {
            "post": {
                "summary": "Issue a new agent token; the old one stops working at once.",
                "operationId": "rotateToken",
                "parameters": [path_param("name", "The workspace's name.")],
                "responses": with_common_errors(json!({
                    "200": ok("The new token, shown once.", "WorkspaceToken"),
                    "404": error("No live workspace has the name.")
                }))
            }
        },
        "/api/v1/checkpoints": {
            "get": {
                "summary": "Signed checkpoints over the record chain, oldest first (see docs/evidence.md).",
                "operationId": "listCheckpoints",
                "parameters": [query_param("after", "Only checkpoints with a greater id.", json!({ "type": "integer" })), query_param("limit", "At most this many (1-10000, default 1000).", json!({ "type": "integer" }))],
                "responses": with_common_errors(json!({ "200": ok("The checkpoints, oldest first.", "CheckpointList") }))
            }
        },
        "/api/v1/checkpoints/latest": {
            "get": {
                "summary": "The newest signed checkpoint: what `warden checkpoint export` writes.",
                "operationId": "latestCheckpoint",
                "responses": with_common_errors(json!({ "200": ok("The checkpoint.", "Checkpoint"), "404": error("No checkpoint signed yet.") }))
            }
        },
        "/api/v2/agent-firewall/sessions/{id}/logs": {
            "get": {
                "summary": "One session's records in ascending sequence order: Coder's session-log read API, for scripts written against it.",
                "description": "Bounds are exclusive: rows with a sequence number above seq_after and below seq_before. A session id names the session in whichever workspace has it. Rows carry the reference's field names: detail is the URL, created_at the event time (the receive time when boundary sent none), captured_at when the control plane received the record.",
                "operationId": "agentFirewallSessionLogs",
                "parameters": [
                    path_param("id", "The client session id."),
                    query_param("seq_after", "Only rows with a sequence number above this.", json!({ "type": "integer" })),
                    query_param("seq_before", "Only rows with a sequence number below this.", json!({ "type": "integer" })),
                    limit_param("Rows")
                ],
                "responses": with_common_errors(json!({
                    "200": ok("The rows.", "SessionLogs"),
                    "400": error("A parameter is invalid; the message names it."),
                    "404": error("No session with this id that the caller may see.")
                }))
            }
        },
        "/api/v1/records": {
            "get": {
                "summary": "Stored records matching every filter given, newest first, a page at a time.",
                "description": "Keyset pages: next is the position of the last record shown, so records committed while paging never shift, skip or repeat a record. head is where to start the stream to get every matching record newer than the first page, none twice. A page ends after limit records or once its records reach the server's byte budget (--max-response-bytes, 4 MiB by default; a page holds at least one record), whichever comes first: in both cases next is set, and following it gives the rest.",
                "operationId": "listRecords",
                "parameters": list_params,
                "responses": with_common_errors(json!({
                    "200": ok("A page of records.", "RecordPage"),
                    "400": error("A parameter is invalid; the message names it."),
                    "404": error("No live workspace has the name.")
                }))
            }
        },
        "/api/v1/records/stream": {
            "get": {
                "summary": "New matching records as server-sent events, oldest first.",
                "description": "Events: `record` (data: a Record; id: its cursor) and `position` (data: a Position; id: the cursor). The first event is a position: where the stream starts. Every event's id is a cursor to resume from (Last-Event-ID or after): no record is missed or repeated across reconnects. Comments keep an idle stream open. The stream ends when the server shuts down.",
                "operationId": "streamRecords",
                "parameters": stream_params,
                "responses": with_common_errors(json!({
                    "200": { "description": "The event stream.", "content": { "text/event-stream": { "schema": string() } } },
                    "400": error("A parameter or the cursor is invalid, or the cursor is beyond the newest record (the message names the newest record's cursor)."),
                    "404": error("No live workspace has the name.")
                }))
            }
        },
        "/api/v1/workspaces/{name}/sessions": {
            "get": {
                "summary": "A workspace's client sessions, the most recently stored-to first.",
                "operationId": "listSessions",
                "parameters": [
                    workspace_param.clone(),
                    limit_param("Sessions"),
                    query_param("cursor", "The next of the previous page.", string())
                ],
                "responses": with_common_errors(json!({
                    "200": ok("A page of sessions.", "SessionList"),
                    "400": error("A parameter is invalid."),
                    "404": error("No workspace has the name.")
                }))
            }
        },
        "/api/v1/workspaces/{name}/sessions/{session}": {
            "get": {
                "summary": "One session: its summary, its gaps as ranges, and its records in sequence order, a page at a time.",
                "description": "A page of records ends after limit records or at the server's byte budget (--max-response-bytes), whichever comes first; next is then set.",
                "operationId": "sessionReport",
                "parameters": [
                    workspace_param,
                    path_param("session", "The client session id."),
                    limit_param("Records"),
                    query_param("cursor", "The next of the previous page.", string()),
                    query_param(
                        "max_gaps",
                        &format!("The most gap ranges to list, 0 to {MAX_GAPS}."),
                        json!({ "type": "integer", "minimum": 0, "maximum": MAX_GAPS, "default": MAX_GAPS })
                    )
                ],
                "responses": with_common_errors(json!({
                    "200": ok("The session report.", "SessionReport"),
                    "400": error("A parameter is invalid."),
                    "404": error("No such workspace or session.")
                }))
            }
        },
        "/api/v1/policies/{digest}": {
            "get": {
                "summary": "A policy text a client reported, by its digest (the first text stored for a digest wins; texts whose SHA-256 is not their digest are refused).",
                "operationId": "policy",
                "parameters": [
                    path_param("digest", "Lower-case hex SHA-256 of the text.")
                ],
                "responses": with_common_errors(json!({
                    "200": ok("The policy.", "Policy"),
                    "404": error("No policy with this digest.")
                }))
            }
        },
        "/api/v1/summaries": {
            "get": {
                "summary": "Per live workspace: records over a time range by decision, the most denied hosts, losses, unexplained loss, last contact.",
                "operationId": "summaries",
                "parameters": [
                    query_param("workspace", "Only this live workspace, by name.", string()),
                    time_param("since", "Count records at or after this time"),
                    time_param("until", "Count records before this time"),
                    query_param(
                        "top",
                        &format!("How many of the most denied hosts to list, 0 to {MAX_TOP_HOSTS}."),
                        json!({ "type": "integer", "minimum": 0, "maximum": MAX_TOP_HOSTS, "default": DEFAULT_TOP_HOSTS })
                    )
                ],
                "responses": with_common_errors(json!({
                    "200": ok("The summaries.", "SummaryList"),
                    "400": error("A parameter is invalid."),
                    "404": error("No live workspace has the name.")
                }))
            }
        }
    })
}

fn nullable(mut schema: Value) -> Value {
    schema["nullable"] = json!(true);
    schema
}

fn time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn uuid() -> Value {
    json!({ "type": "string", "format": "uuid" })
}

fn count() -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": 0 })
}

fn array_of(name: &str) -> Value {
    json!({ "type": "array", "items": schema(name) })
}

fn session_info_properties() -> Value {
    json!({
        "session_id": string(),
        "records": { "type": "integer", "format": "int64", "minimum": 0, "description": "Records stored (conflicts and purged ones included)." },
        "conflicts": count(),
        "first_sequence": nullable(json!({ "type": "integer", "format": "int32" })),
        "last_sequence": nullable(json!({ "type": "integer", "format": "int32" })),
        "final_sequence": nullable(json!({ "type": "integer", "format": "int64", "description": "The last number the client said it assigned when it closed the session (-1: none)." })),
        "missing": { "type": "integer", "format": "int64", "minimum": 0, "description": "Sequence numbers up to the last known one that no stored record carries." },
        "reported_lost": { "type": "integer", "format": "int64", "minimum": 0, "description": "Records reported lost (client, agent or server)." },
        "unexplained": { "type": "integer", "format": "int64", "minimum": 0, "description": "Missing numbers that no report explains." },
        "losses": array_of("Loss"),
        "agent_dropped": { "type": "array", "items": schema("GapRange"), "description": "Sequence numbers the workspace agent reported losing (its full spool dropped them, the control plane refused them, or its spool could not write them), lowest first." },
        "purged": { "type": "integer", "format": "int64", "minimum": 0, "description": "Of records, how many retention deleted." },
        "policy_digest": nullable(json!({ "type": "string", "description": "The digest of the policy the session's latest records were decided under." }))
    })
}

const SESSION_INFO_REQUIRED: [&str; 12] = [
    "session_id",
    "records",
    "conflicts",
    "first_sequence",
    "last_sequence",
    "final_sequence",
    "missing",
    "reported_lost",
    "unexplained",
    "losses",
    "agent_dropped",
    "purged",
];

fn with_session_info(mut properties: Value, required: &[&str]) -> Value {
    let mut all = session_info_properties();
    if let (Some(all), Some(extra)) = (all.as_object_mut(), properties.as_object_mut()) {
        all.append(extra);
    }
    let required: Vec<&str> = SESSION_INFO_REQUIRED
        .iter()
        .chain(required)
        .copied()
        .collect();
    properties = all;
    json!({ "type": "object", "required": required, "properties": properties })
}

fn schemas() -> Value {
    json!({
        "Error": {
            "type": "object", "required": ["error"],
            "properties": { "error": { "type": "string", "description": "What went wrong, for people." } }
        },
        "Policy": {
            "type": "object", "required": ["digest", "text", "first_seen"],
            "properties": {
                "digest": string(),
                "text": string(),
                "first_seen": time()
            }
        },
        "Loss": {
            "type": "object", "required": ["source", "reason", "records", "frames"],
            "properties": {
                "source": { "type": "string", "enum": ["client", "agent", "server"] },
                "reason": string(),
                "records": count(),
                "frames": count()
            }
        },
        "CreateWorkspace": {
            "type": "object", "required": ["name", "owner"], "additionalProperties": false,
            "properties": {
                "name": { "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$" },
                "owner": string(),
                "agent_name": { "type": "string", "default": "main" },
                "startup_script": string()
            }
        },
        "WorkspaceToken": {
            "type": "object", "required": ["workspace_id", "workspace_name", "owner", "agent_name", "agent_token"],
            "properties": {
                "workspace_id": uuid(), "workspace_name": string(), "owner": string(),
                "agent_name": string(), "agent_token": { "type": "string", "description": "Shown once; only its hash is stored." }
            }
        },
        "WorkspaceInfo": {
            "type": "object",
            "required": ["workspace_id", "workspace_name", "owner", "agent_id", "agent_name", "startup_script", "created_at", "token_issued_at", "last_contact_at", "last_batch_at", "last_batch_id", "losses"],
            "properties": {
                "workspace_id": uuid(), "workspace_name": string(), "owner": string(),
                "agent_id": uuid(), "agent_name": string(), "startup_script": string(),
                "created_at": time(), "token_issued_at": time(),
                "last_contact_at": nullable(time()), "last_batch_at": nullable(time()),
                "last_batch_id": nullable(uuid()),
                "losses": array_of("Loss")
            }
        },
        "Checkpoint": {
            "type": "object",
            "description": "A signed checkpoint (warden-checkpoint-v1): the chain up to `link` has `head`; see docs/evidence.md for the signed form.",
            "required": ["format", "id", "link", "last_record_id", "head", "time", "time_ns", "key_id", "fingerprint", "public_key", "signature"],
            "properties": {
                "format": string(), "id": count(), "link": count(), "last_record_id": count(),
                "head": string(), "time": time(), "time_ns": count(), "key_id": string(),
                "fingerprint": string(), "public_key": string(), "signature": string()
            }
        },
        "SessionLogs": {
            "type": "object", "required": ["logs"],
            "properties": { "logs": array_of("SessionLog") }
        },
        "SessionLog": {
            "type": "object",
            "description": "A row of Coder's session-log API.",
            "required": ["sequence_number", "method", "detail", "matched_rule", "created_at", "captured_at"],
            "properties": {
                "sequence_number": { "type": "integer" }, "method": string(), "detail": string(),
                "matched_rule": string(), "created_at": time(), "captured_at": time()
            }
        },
        "CheckpointList": { "type": "array", "items": { "$ref": "#/components/schemas/Checkpoint" } },
        "WorkspaceList": {
            "type": "object", "required": ["workspaces"],
            "properties": { "workspaces": array_of("WorkspaceInfo") }
        },
        "Peer": {
            "type": "object", "required": ["uid", "gid", "pid", "comm", "exe"],
            "description": "The socket peer that wrote the record to the agent (SO_PEERCRED and /proc).",
            "properties": {
                "uid": { "type": "integer", "format": "int64" }, "gid": { "type": "integer", "format": "int64" },
                "pid": { "type": "integer", "format": "int32" }, "comm": string(), "exe": string()
            }
        },
        "Record": {
            "type": "object",
            "description": "The json boundary line of the control plane's stderr (docs/stderr-format.md) plus id, peer and conflict; optional keys are left out when unknown or empty.",
            "required": ["id", "ts", "level", "msg", "workspace_id", "decision", "http_method", "http_url", "received_at", "peer", "conflict"],
            "properties": {
                "id": { "type": "integer", "format": "int64", "description": "The record's id; ids grow in commit order." },
                "ts": { "type": "string", "format": "date-time", "description": "The event time, or the receive time when the record had none." },
                "level": { "type": "string", "enum": ["info", "warn"] },
                "msg": { "type": "string", "enum": ["boundary"] },
                "workspace_id": uuid(),
                "workspace_name": string(),
                "workspace_owner": string(),
                "agent_name": string(),
                "decision": { "type": "string", "enum": ["allow", "deny"] },
                "http_method": string(),
                "http_url": string(),
                "event_time": time(),
                "received_at": time(),
                "session_id": string(),
                "sequence": { "type": "integer", "format": "int32" },
                "matched_rule": string(),
                "process": { "type": "string", "description": "The confined process name the client sent." },
                "http_url_truncated": { "type": "boolean", "description": "Present (true) when the URL was stored cut to the control plane's bound (--max-url-bytes)." },
                "http_url_bytes": { "type": "integer", "format": "int64", "description": "The URL's length in bytes as sent, when it was cut." },
                "agent_received_at": { "type": "string", "format": "date-time", "description": "When the agent says it read the record (the agent's clock; received_at is the control plane's)." },
                "agent_time_suspect": { "type": "boolean", "description": "Present (true) when the agent's time is implausible next to the control plane's: never trusted." },
                "policy_digest": { "type": "string", "description": "The digest of the policy the record was decided under (see /api/v1/policies/{digest})." },
                "peer": schema("Peer"),
                "conflict": { "type": "boolean", "description": "Its session and sequence number were already used by a record with other content." }
            }
        },
        "RecordPage": {
            "type": "object", "required": ["records", "next", "head"],
            "properties": {
                "records": array_of("Record"),
                "next": nullable(json!({ "type": "string", "description": "Present when older records may match: the cursor of the next page." })),
                "head": { "type": "string", "description": "The stream cursor (after) that follows on from this page." }
            }
        },
        "Position": {
            "type": "object", "required": ["cursor"],
            "properties": { "cursor": string() }
        },
        "SessionInfo": with_session_info(json!({}), &[]),
        "SessionListing": with_session_info(
            json!({ "first_record_at": nullable(time()), "last_record_at": nullable(time()) }),
            &["first_record_at", "last_record_at"]
        ),
        "SessionList": {
            "type": "object", "required": ["workspace_id", "workspace_name", "sessions", "next"],
            "properties": {
                "workspace_id": uuid(),
                "workspace_name": nullable(string()),
                "sessions": array_of("SessionListing"),
                "next": nullable(string())
            }
        },
        "GapRange": {
            "type": "object", "required": ["first", "last"],
            "description": "Consecutive missing sequence numbers, both ends included.",
            "properties": { "first": { "type": "integer", "format": "int64" }, "last": { "type": "integer", "format": "int64" } }
        },
        "SessionReport": {
            "type": "object",
            "required": ["workspace_id", "workspace_name", "session", "gaps", "gaps_truncated", "records", "next", "verdicts"],
            "properties": {
                "workspace_id": uuid(),
                "workspace_name": nullable(string()),
                "session": schema("SessionInfo"),
                "verdicts": { "type": "array", "items": schema("Verdict"), "description": "The session's signed completeness verdicts, oldest first: the last one is current, earlier ones were superseded (none until the session ended or went idle)." },
                "gaps": { "type": "array", "items": schema("GapRange"), "description": "Lowest first; numbers retention purged inside the stored span show up here too." },
                "gaps_truncated": { "type": "boolean", "description": "More gaps exist than listed." },
                "records": { "type": "array", "items": schema("Record"), "description": "A page of the session's records in sequence order (by sequence number, then id)." },
                "next": nullable(json!({ "type": "string", "description": "Present when more records may follow: the cursor of the next page." }))
            }
        },
        "Verdict": {
            "type": "object",
            "required": ["id", "verdict", "end_reported", "signed_at", "supersedes", "key_id", "statement", "signature"],
            "properties": {
                "id": { "type": "integer", "format": "int64", "description": "Its position among stored verdicts." },
                "verdict": { "type": "string", "enum": ["complete", "complete-except-reported-drops", "incomplete"] },
                "end_reported": { "type": "boolean", "description": "Whether the client reported the session's end (an idle session without one is judged incomplete)." },
                "signed_at": { "type": "string", "format": "date-time" },
                "supersedes": nullable(json!({ "type": "integer", "format": "int64", "description": "The verdict it superseded." })),
                "key_id": { "type": "string", "description": "The signing key's id." },
                "statement": { "type": "string", "description": "The signed statement (docs/evidence.md), as signed." },
                "signature": { "type": "string", "description": "The Ed25519 signature over the statement, hex." }
            }
        },
        "HostCount": {
            "type": "object", "required": ["host", "records"],
            "properties": { "host": string(), "records": count() }
        },
        "WorkspaceSummary": {
            "type": "object",
            "required": ["workspace_id", "workspace_name", "owner", "agent_name", "allowed", "denied", "conflicts", "first_record_at", "last_record_at", "top_denied_hosts", "losses", "sessions", "missing", "reported_lost", "unexplained_loss", "last_contact_at", "last_batch_at"],
            "properties": {
                "workspace_id": uuid(), "workspace_name": string(), "owner": string(), "agent_name": string(),
                "allowed": count(), "denied": count(), "conflicts": count(),
                "first_record_at": nullable(time()), "last_record_at": nullable(time()),
                "top_denied_hosts": array_of("HostCount"),
                "losses": { "type": "array", "items": schema("Loss"), "description": "All time: loss counters carry no time." },
                "sessions": count(), "missing": count(), "reported_lost": count(),
                "unexplained_loss": { "type": "integer", "format": "int64", "minimum": 0, "description": "Missing sequence numbers no report explains, over the workspace's sessions (all time)." },
                "last_contact_at": nullable(time()), "last_batch_at": nullable(time())
            }
        },
        "SummaryList": {
            "type": "object", "required": ["since", "until", "workspaces"],
            "properties": {
                "since": nullable(time()), "until": nullable(time()),
                "workspaces": array_of("WorkspaceSummary")
            }
        }
    })
}

/// The whole document.
pub fn document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Warden control plane HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Workspace administration and the boundary audit trail: stored records with filters and keyset pages, a live stream, session reports and per-workspace summaries, signed checkpoints and the admin event log. Every /api/v1 route but this document needs a bearer token (in the Authorization header only; never in the query string): an admin token (the bootstrap one in <data-dir>/admin-token or WARDEN_ADMIN_TOKEN, or a named one from warden token create --role admin) may use every route; an auditor token (warden token create --role auditor) the read routes (GET) but the token list; an agent token none (it is for the agent API). The read routes also accept the web page's session cookie (warden_session, set by signing in at /login), which is how the page follows the stream. No route that changes something accepts the cookie, and no route deletes or edits records (only retention purges them). A missing or invalid token answers 401, a valid one whose role may not use the route 403. A path no route serves answers 404, and a method a path does not take 405, each with an ApiError body."
        },
        "security": [{ "token": [] }],
        "paths": merged(paths(), access_paths()),
        "components": {
            "securitySchemes": {
                "token": { "type": "http", "scheme": "bearer", "description": "An admin or auditor token (see the description for which routes each may use)." }
            },
            "responses": {
                "Unauthorized": {
                    "description": "No token, or one that is not valid here.",
                    "headers": { "WWW-Authenticate": { "schema": string() } },
                    "content": json_body("Error")
                },
                "Forbidden": {
                    "description": "A valid token (or session cookie) whose role may not use this route.",
                    "content": json_body("Error")
                }
            },
            "schemas": merged(schemas(), access_schemas())
        }
    })
}

/// `a` with `b`'s members added (two objects).
fn merged(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// The token API and the admin event log.
fn access_paths() -> Value {
    json!({
        "/api/v1/tokens": {
            "get": {
                "summary": "Live named tokens, by name: name, role, created, last used (never the token or its hash). Admin only.",
                "operationId": "listTokens",
                "responses": with_common_errors(json!({ "200": ok("The tokens.", "TokenList") }))
            },
            "post": {
                "summary": "Create a named admin or auditor token; the answer holds it, shown once (only its hash is stored). Recorded as an admin event.",
                "operationId": "createToken",
                "requestBody": { "required": true, "content": json_body("CreateToken") },
                "responses": with_common_errors(json!({
                    "201": ok("Created.", "TokenCreated"),
                    "400": error("Invalid body, name or role."),
                    "409": error("A live token has the name.")
                }))
            }
        },
        "/api/v1/tokens/{name}": {
            "delete": {
                "summary": "Revoke a named token: it stops working at once (web sessions signed in with it too). Recorded as an admin event.",
                "operationId": "revokeToken",
                "parameters": [path_param("name", "The token's name.")],
                "responses": with_common_errors(json!({
                    "200": ok("Revoked.", "TokenInfo"),
                    "404": error("No live token has the name.")
                }))
            }
        },
        "/api/v1/chain/links": {
            "get": {
                "summary": "The record chain's links, oldest first (see docs/evidence.md): what warden verify --url recomputes.",
                "operationId": "listChainLinks",
                "parameters": [
                    query_param("after", "Links after this position (-1: from the genesis link).", json!({ "type": "integer", "format": "int64", "default": -1 })),
                    query_param("limit", "At most this many (1-10000, default 1000).", json!({ "type": "integer", "minimum": 1, "maximum": 10000, "default": 1000 }))
                ],
                "responses": with_common_errors(json!({ "200": ok("A page of links.", "ChainLinkList") }))
            }
        },
        "/api/v1/chain/records": {
            "get": {
                "summary": "Records in chain form (every field the chain's encoding covers), by id, oldest first: what warden verify --url hashes.",
                "operationId": "listChainRecords",
                "parameters": [
                    query_param("after", "Records with a greater id.", json!({ "type": "integer", "format": "int64" })),
                    query_param("before", "Records with a smaller id.", json!({ "type": "integer", "format": "int64" })),
                    query_param("limit", "At most this many (1-10000, default 1000).", json!({ "type": "integer", "minimum": 1, "maximum": 10000, "default": 1000 }))
                ],
                "responses": with_common_errors(json!({ "200": ok("A page of records.", "ChainRecordList") }))
            }
        },
        "/api/v1/chain/verdicts": {
            "get": {
                "summary": "Every stored session completeness verdict, oldest first, with the columns its check compares with the signed statement: what warden verify --url checks.",
                "operationId": "listChainVerdicts",
                "parameters": [
                    query_param("after", "Verdicts with a greater id (0: from the first).", json!({ "type": "integer", "format": "int64", "default": 0 })),
                    query_param("limit", "At most this many (1-10000, default 1000).", json!({ "type": "integer", "minimum": 1, "maximum": 10000, "default": 1000 }))
                ],
                "responses": with_common_errors(json!({ "200": ok("A page of verdicts.", "ChainVerdictList") }))
            }
        },
        "/api/v1/admin-events": {
            "get": {
                "summary": "The admin event log, oldest first: every workspace create, delete and token rotation and every token create and revoke, with who did it, signed and hash-chained (see docs/evidence.md).",
                "operationId": "listAdminEvents",
                "parameters": [
                    query_param("after", "Only events with a greater seq (0: from the first).", json!({ "type": "integer", "format": "int64", "default": 0 })),
                    query_param("limit", "At most this many (1-10000, default 1000).", json!({ "type": "integer", "minimum": 1, "maximum": 10000, "default": 1000 }))
                ],
                "responses": with_common_errors(json!({ "200": ok("A page of events.", "AdminEventList") }))
            }
        }
    })
}

fn access_schemas() -> Value {
    let role = json!({ "type": "string", "enum": ["admin", "auditor"] });
    let hex = json!({ "type": "string", "pattern": "^[0-9a-f]*$" });
    json!({
        "CreateToken": {
            "type": "object", "required": ["name", "role"], "additionalProperties": false,
            "properties": { "name": string(), "role": role }
        },
        "TokenCreated": {
            "type": "object", "required": ["id", "name", "role", "created_at", "token"],
            "properties": { "id": uuid(), "name": string(), "role": role, "created_at": time(), "token": { "type": "string", "description": "The token, shown this once." } }
        },
        "TokenInfo": {
            "type": "object", "required": ["id", "name", "role", "created_at", "last_used_at"],
            "properties": { "id": uuid(), "name": string(), "role": role, "created_at": time(), "last_used_at": nullable(time()) }
        },
        "TokenList": {
            "type": "object", "required": ["tokens"],
            "properties": { "tokens": array_of("TokenInfo") }
        },
        "AdminEvent": {
            "type": "object",
            "required": ["seq", "id", "time", "actor", "action", "target", "detail", "key_id", "public_key", "signature", "prev", "hash"],
            "properties": {
                "seq": { "type": "integer", "format": "int64", "minimum": 1 },
                "id": uuid(),
                "time": time(),
                "actor": {
                    "type": "object", "required": ["id", "name", "role"],
                    "properties": { "id": nullable(uuid()), "name": string(), "role": string() },
                    "description": "The token that did it (id null: the bootstrap admin token)."
                },
                "action": { "type": "string", "enum": ["workspace.create", "workspace.delete", "workspace.rotate-token", "token.create", "token.revoke"] },
                "target": string(),
                "detail": { "type": "string", "description": "A JSON object, as signed." },
                "key_id": string(),
                "public_key": { "type": "string", "description": "ed25519:<hex>" },
                "signature": hex,
                "prev": hex,
                "hash": hex
            }
        },
        "ChainLink": {
            "type": "object",
            "required": ["seq", "kind", "first_id", "last_id", "records", "records_hash", "detail", "committed_ns", "head"],
            "properties": {
                "seq": { "type": "integer", "format": "int64" },
                "kind": { "type": "integer", "description": "0 records, 1 retention tombstone." },
                "first_id": { "type": "integer", "format": "int64" },
                "last_id": { "type": "integer", "format": "int64" },
                "records": { "type": "integer", "format": "int64" },
                "records_hash": hex,
                "detail": hex,
                "committed_ns": { "type": "integer", "format": "int64" },
                "head": hex
            }
        },
        "ChainLinkList": {
            "type": "object", "required": ["links"],
            "properties": { "links": array_of("ChainLink") }
        },
        "ChainRecord": {
            "type": "object",
            "description": "A record with every field the chain's canonical encoding covers (docs/evidence.md); event_kind is known, missing or out_of_range.",
            "additionalProperties": true
        },
        "ChainRecordList": {
            "type": "object", "required": ["records"],
            "properties": { "records": array_of("ChainRecord") }
        },
        "ChainVerdict": {
            "type": "object",
            "description": "A stored session verdict: id, workspace_id, session_id, last_id, made_ns, the signed statement, key_id, public_key (ed25519:hex) and signature (hex); docs/evidence.md.",
            "required": ["id", "workspace_id", "session_id", "last_id", "made_ns", "statement", "key_id", "public_key", "signature"],
            "additionalProperties": true
        },
        "ChainVerdictList": {
            "type": "object", "required": ["verdicts"],
            "properties": { "verdicts": array_of("ChainVerdict") }
        },
        "AdminEventList": {
            "type": "object", "required": ["events"],
            "properties": { "events": array_of("AdminEvent") }
        }
    })
}
