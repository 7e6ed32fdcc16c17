//! Printing records: each record object as the server sent it (`--json`,
//! with characters that would act on a terminal escaped), or a table row. The table's columns are fixed by the first records
//! printed, so that followed records line up under them.

use std::io::{ErrorKind, Write};

use warden_api::records::Record;
use warden_api::time::stamp;

use crate::cmd::failure::Failure;
use crate::cmd::table::{Column, Layout, clean, escape_json, terminal_width};

/// The record table: time, where it came from, what was decided, the
/// request.
const RECORD_COLUMNS: [Column; 5] = [
    Column::new("TIME", 24),
    Column::new("WORKSPACE", 20),
    Column::new("DECISION", 9),
    Column::new("METHOD", 8),
    Column::shrinking("URL"),
];

/// A session's records: the same with the sequence number first.
const SESSION_COLUMNS: [Column; 5] = [
    Column::new("SEQ", 11),
    Column::new("TIME", 24),
    Column::new("DECISION", 9),
    Column::new("METHOD", 8),
    Column::shrinking("URL"),
];

/// Which table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Records,
    Session,
}

/// Where records go.
pub struct Output {
    json: bool,
    /// OCSF events (`--format ocsf`) instead of record objects; with `json`.
    ocsf: bool,
    table: Table,
    width: Option<usize>,
    layout: Option<Layout>,
}

impl Output {
    pub fn new(json: bool) -> Output {
        Output::with_table(json, Table::Records)
    }

    /// OCSF HTTP Activity events, one JSON object per line (what the
    /// server's `--export-ocsf` file holds).
    pub fn ocsf() -> Output {
        Output {
            ocsf: true,
            ..Output::with_table(true, Table::Records)
        }
    }

    pub fn with_table(json: bool, table: Table) -> Output {
        Output {
            json,
            ocsf: false,
            table,
            width: terminal_width(),
            layout: None,
        }
    }

    /// Prints record objects (JSON text), in the order given. The first
    /// call fixes the table: columns fit these rows, or at least `min`.
    pub fn records<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a str>,
        min: &[usize],
    ) -> Result<(), Failure> {
        let records: Vec<&str> = records.into_iter().collect();
        if self.ocsf {
            let mut text = String::new();
            for record in records {
                let record = parse(record)?;
                let event = warden_server::export::ocsf::line(
                    &warden_server::export::record::ExportRecord::api(&record),
                );
                text.push_str(&escape_json(event.trim_end()));
                text.push('\n');
            }
            return write_out(&text);
        }
        if self.json {
            let mut text = String::new();
            for record in records {
                text.push_str(&escape_json(record));
                text.push('\n');
            }
            return write_out(&text);
        }
        let rows = records
            .iter()
            .map(|r| parse(r).map(|r| self.row(&r)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut text = String::new();
        if self.layout.is_none() {
            let columns: &[Column] = match self.table {
                Table::Records => &RECORD_COLUMNS,
                Table::Session => &SESSION_COLUMNS,
            };
            let layout = Layout::fit(columns, &rows, min, self.width);
            text.push_str(&layout.header());
            text.push('\n');
            self.layout = Some(layout);
        }
        if let Some(layout) = &self.layout {
            for row in &rows {
                text.push_str(&layout.row(row));
                text.push('\n');
            }
        }
        write_out(&text)
    }

    fn row(&self, r: &Record) -> Vec<String> {
        let mut time = stamp(r.ts);
        if r.event_time.is_none() {
            // Shown is when the agent received it.
            time.push('*');
        }
        let mut decision = r.decision.clone();
        if r.conflict {
            decision.push('!');
        }
        let method = clean(&r.http_method).into_owned();
        let url = clean(&r.http_url).into_owned();
        match self.table {
            Table::Records => vec![
                time,
                clean(r.workspace_name.as_deref().unwrap_or("?")).into_owned(),
                decision,
                method,
                url,
            ],
            Table::Session => vec![
                r.sequence.map_or_else(|| "-".into(), |s| s.to_string()),
                time,
                decision,
                method,
                url,
            ],
        }
    }
}

/// What the table's marks mean (shown in `--help`).
pub const MARKS: &str = "In the table, * after a time: the record had no event time, the time shown is when the agent received it; ! after a decision: a conflicting record (its session and sequence number were used before by a record with other content).";

fn parse(text: &str) -> Result<Record, Failure> {
    serde_json::from_str(text).map_err(|e| {
        Failure::runtime(anyhow::Error::new(e).context("unexpected record from the server"))
    })
}

/// Writes to stdout and flushes (a follower's lines must show at once).
pub fn write_out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(Failure::reader_gone()),
        Err(e) => Err(Failure::runtime(
            anyhow::Error::new(e).context("writing to stdout"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event_time: bool, conflict: bool) -> String {
        let mut v = serde_json::json!({
            "id": 3, "ts": "2025-12-08T20:58:46.093456789Z", "level": "warn", "msg": "boundary",
            "workspace_id": "6f1c0a52-8a3e-4c1f-9d7b-2b1e5e0c9a11", "workspace_name": "dev",
            "decision": "deny", "http_method": "GET",
            "http_url": "https://evil.example/\u{1b}[2J", "received_at": "2025-12-08T20:58:47Z",
            "session_id": "s", "sequence": 12,
            "peer": {"uid": 1, "gid": 1, "pid": 2, "comm": "c", "exe": "/e"}, "conflict": conflict
        });
        if event_time {
            v["event_time"] = v["ts"].clone();
        }
        v.to_string()
    }

    #[test]
    fn rows_mark_receive_times_and_conflicts_and_quote_hostile_urls() {
        let out = Output {
            json: false,
            ocsf: false,
            table: Table::Records,
            width: None,
            layout: None,
        };
        let r: Record = serde_json::from_str(&record(false, true)).unwrap();
        assert_eq!(
            out.row(&r),
            [
                "2025-12-08 20:58:46.093*",
                "dev",
                "deny!",
                "GET",
                r#""https://evil.example/\x1b[2J""#
            ]
        );
        let r: Record = serde_json::from_str(&record(true, false)).unwrap();
        let session = Output {
            table: Table::Session,
            ..out
        };
        assert_eq!(
            session.row(&r)[..3],
            ["12", "2025-12-08 20:58:46.093", "deny"]
        );
    }
}
