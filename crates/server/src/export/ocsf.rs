//! OCSF events: each record as an HTTP Activity event (class 4002, category
//! 4 Network Activity) of OCSF 1.3.0, one JSON object per line. The mapping
//! table is in `docs/exports.md`; tests validate every event against
//! `tests/data/ocsf-1.3.0-http-activity.schema.json`.

use serde_json::{Map, Value, json};
use warden_proto::domain::Decision;

use super::record::ExportRecord;

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.3.0";
/// HTTP Activity.
pub const CLASS_UID: u32 = 4002;
/// Network Activity.
pub const CATEGORY_UID: u32 = 4;

/// The HTTP Activity `activity_id` of a method (99 Other for methods the
/// class does not name).
pub fn activity_id(method: &str) -> (u32, &'static str) {
    match method.to_ascii_uppercase().as_str() {
        "CONNECT" => (1, "Connect"),
        "DELETE" => (2, "Delete"),
        "GET" => (3, "Get"),
        "HEAD" => (4, "Head"),
        "OPTIONS" => (5, "Options"),
        "POST" => (6, "Post"),
        "PUT" => (7, "Put"),
        "TRACE" => (8, "Trace"),
        "PATCH" => (9, "Patch"),
        _ => (99, "Other"),
    }
}

fn millis(t: jiff::Timestamp) -> i64 {
    t.as_millisecond()
}

/// The OCSF event of one record.
pub fn event(r: &ExportRecord<'_>) -> Value {
    let (activity_id, activity_name) = activity_id(r.method);
    let allowed = r.decision == Decision::Allow;
    // action: 1 Allowed, 2 Denied; disposition: 1 Allowed, 2 Blocked.
    let (action_id, action, disposition_id, disposition) = if allowed {
        (1, "Allowed", 1, "Allowed")
    } else {
        (2, "Denied", 2, "Blocked")
    };
    // severity: 1 Informational for an allowed request, 2 Low for a denied
    // one (the OTLP export's INFO and WARN).
    let (severity_id, severity) = if allowed {
        (1, "Informational")
    } else {
        (2, "Low")
    };
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "uid": r.id.to_string(),
        "product": {
            "name": "Warden",
            "vendor_name": "Warden",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "logged_time": millis(r.received_at),
        "log_name": "boundary",
    });
    if let Some(session) = r.session_id {
        metadata["correlation_uid"] = json!(session);
        metadata["sequence"] = json!(r.sequence_number);
    }
    let mut url = Map::new();
    url.insert("url_string".into(), json!(r.url));
    if let Ok(parsed) = url::Url::parse(r.url) {
        url.insert("scheme".into(), json!(parsed.scheme()));
        if let Some(host) = parsed.host_str() {
            url.insert("hostname".into(), json!(host.trim_matches(['[', ']'])));
        }
        if let Some(port) = parsed.port_or_known_default() {
            url.insert("port".into(), json!(port));
        }
        url.insert("path".into(), json!(parsed.path()));
        if let Some(query) = parsed.query() {
            url.insert("query_string".into(), json!(query));
        }
    }
    let mut dst = Map::new();
    if let Some((host, port)) = r.server() {
        dst.insert("hostname".into(), json!(host));
        if let Some(port) = port {
            dst.insert("port".into(), json!(port));
        }
    }
    let mut process = Map::new();
    process.insert("pid".into(), json!(r.peer.pid));
    process.insert("user".into(), json!({ "uid": r.peer.uid.to_string() }));
    if !r.peer.comm.is_empty() {
        process.insert("name".into(), json!(r.peer.comm));
    }
    if !r.peer.exe.is_empty() {
        let name = r.peer.exe.rsplit('/').next().unwrap_or(r.peer.exe);
        // type_id 1: Regular File.
        process.insert(
            "file".into(),
            json!({ "path": r.peer.exe, "name": name, "type_id": 1, "type": "Regular File" }),
        );
    }
    let mut unmapped = json!({
        "warden": {
            "record_id": r.id,
            "decision": r.decision.as_str(),
            "workspace_id": r.workspace_id.to_string(),
            "workspace_name": r.workspace_name,
            "owner": r.workspace_owner,
            "agent_name": r.agent_name,
            "peer_gid": r.peer.gid,
            "received_at": r.received_at.to_string(),
        }
    });
    let w = &mut unmapped["warden"];
    if !r.process.is_empty() {
        w["process"] = json!(r.process);
    }
    if let Some(digest) = r.policy_digest {
        w["policy_digest"] = json!(digest);
    }
    if let Some(bytes) = r.url_original_bytes {
        w["url_original_bytes"] = json!(bytes);
    }
    if r.event_time.is_none() {
        w["time_received"] = json!(true);
    }
    if r.conflict {
        w["conflict"] = json!(true);
    }
    let mut event = json!({
        "class_uid": CLASS_UID,
        "class_name": "HTTP Activity",
        "category_uid": CATEGORY_UID,
        "category_name": "Network Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": format!("HTTP Activity: {activity_name}"),
        "time": millis(r.time()),
        "severity_id": severity_id,
        "severity": severity,
        "action_id": action_id,
        "action": action,
        "disposition_id": disposition_id,
        "disposition": disposition,
        "message": format!("{} {} {}", r.decision.as_str(), r.method, r.url),
        "metadata": metadata,
        "http_request": {
            "http_method": r.method,
            "url": Value::Object(url),
        },
        "actor": { "process": Value::Object(process) },
        // The sandboxed workspace the request came from.
        "src_endpoint": { "uid": r.workspace_id.to_string(), "name": r.workspace_name },
        "unmapped": unmapped,
    });
    if !dst.is_empty() {
        event["dst_endpoint"] = Value::Object(dst);
    }
    if !r.matched_rule.is_empty() {
        event["firewall_rule"] = json!({ "name": r.matched_rule });
    }
    event
}

/// The event as one JSON line, newline included.
pub fn line(r: &ExportRecord<'_>) -> String {
    let mut line = event(r).to_string();
    line.push('\n');
    line
}
