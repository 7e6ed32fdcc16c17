//! `warden emit` as a process, against a small acknowledging fake agent
//! (a thread serving a real Unix socket), without a socket, with malformed
//! input, and with an agent that never appears.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;

use bytes::{Bytes, BytesMut};
use warden_proto::codec::{Frame, HEADER_LEN, Tag, decode_payload, encode_frame, parse_header};
use warden_proto::wire::{AckAccepted, FrameAck, frame_ack::Outcome};

/// Serves connections one after the other, acknowledging every frame,
/// until a connection that carried the final status ends. Returns the
/// sequence numbers received, sorted and deduplicated.
fn fake_agent(listener: UnixListener) -> thread::JoinHandle<Vec<i32>> {
    thread::spawn(move || {
        let mut seqs = Vec::new();
        loop {
            let (stream, _) = listener.accept().expect("accept");
            if serve(stream, &mut seqs) {
                seqs.sort_unstable();
                seqs.dedup();
                return seqs;
            }
        }
    })
}

/// One connection; true when it carried the final status.
fn serve(mut stream: UnixStream, seqs: &mut Vec<i32>) -> bool {
    let mut acking = false;
    let mut numbered = 0u64;
    let mut saw_final = false;
    loop {
        let mut header = [0u8; HEADER_LEN];
        if stream.read_exact(&mut header).is_err() {
            return saw_final;
        }
        let (tag, len) = parse_header(header).expect("a known tag");
        let mut payload = vec![0; len];
        stream.read_exact(&mut payload).expect("a whole frame");
        let frame = decode_payload(tag, Bytes::from(payload)).expect("a valid frame");
        let mut records = 0;
        match frame.frame {
            Frame::AckRequest(_) => {
                acking = true;
                reply(
                    &mut stream,
                    Tag::AckAccepted,
                    Frame::AckAccepted(AckAccepted { version: 1 }),
                );
                continue;
            }
            Frame::Logs(logs) => {
                records = logs.logs.len() as u32;
                seqs.extend(logs.logs.iter().map(|l| l.sequence_number));
            }
            Frame::Status(status) => saw_final |= status.final_sequence_number.is_some(),
            _ => {}
        }
        if acking {
            numbered += 1;
            let ack = FrameAck {
                frame: numbered,
                outcome: Outcome::Durable as i32,
                records,
                rejected: 0,
            };
            reply(&mut stream, Tag::FrameAck, Frame::FrameAck(ack));
        }
    }
}

fn reply(stream: &mut UnixStream, tag: Tag, frame: Frame) {
    let mut buf = BytesMut::new();
    encode_frame(tag, &frame, &mut buf).unwrap();
    // The client may already be gone; that ends the connection anyway.
    let _ = stream.write_all(&buf);
}

fn emit(args: &[&str], env_socket: Option<&Path>, stdin: String) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
    command
        .arg("emit")
        .args(args)
        .env_remove("CODER_AGENT_BOUNDARY_LOG_PROXY_SOCKET_PATH")
        .env_remove("CODER_BOUNDARY_LOG_SOCKET")
        .env_remove("WARDEN_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = env_socket {
        command.env("CODER_BOUNDARY_LOG_SOCKET", path);
    }
    let mut child = command.spawn().expect("start warden emit");
    let mut input = child.stdin.take().unwrap();
    let writer = thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let output = child.wait_with_output().expect("wait for warden emit");
    writer.join().unwrap();
    output
}

fn line(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!(
            r#"{{"allowed": true, "method": "GET", "url": "https://github.com/{i}", "rule": "domain=github.com", "time": "2025-12-08T20:58:46Z"}}"#
        )
    } else {
        format!(r#"{{"allowed": false, "method": "POST", "url": "https://evil.example/{i}"}}"#)
    }
}

#[test]
fn emit_delivers_100000_lines_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let agent = fake_agent(UnixListener::bind(&path).unwrap());
    let n = 100_000;
    let input: String = (0..n).map(|i| line(i) + "\n").collect();
    // The socket comes from the agent's environment variable.
    let output = emit(&["--json"], Some(&path), input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "read 100000, malformed 0, sent 100000, confirmed 100000, dropped 0, undelivered 0"
        ),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["confirmed"], 100_000);
    assert_eq!(json["success"], true);
    assert_eq!(json["final_sequence_number"], 99_999);
    let seqs = agent.join().unwrap();
    assert_eq!(seqs, (0..n as i32).collect::<Vec<_>>());
}

#[test]
fn emit_without_a_socket_is_a_usage_error() {
    let output = emit(&[], None, line(0));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no agent socket"), "{stderr}");
    assert!(stderr.contains("CODER_BOUNDARY_LOG_SOCKET"), "{stderr}");
}

#[test]
fn emit_reports_malformed_lines_sends_the_rest_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let agent = fake_agent(UnixListener::bind(&path).unwrap());
    let input = format!("{}\n{{\"allowed\": 1}}\n{}\n", line(0), line(1));
    let output = emit(&["--socket", path.to_str().unwrap()], None, input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 2: not a valid record"), "{stderr}");
    assert!(
        stderr.contains("read 3, malformed 1, sent 2, confirmed 2"),
        "{stderr}"
    );
    assert_eq!(agent.join().unwrap(), vec![0, 1]);
}

#[test]
fn emit_gives_up_at_its_drain_deadline_when_no_agent_listens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sock");
    let input = format!("{}\n{}\n", line(0), line(1));
    let output = emit(
        &[
            "--socket",
            path.to_str().unwrap(),
            "--drain-timeout",
            "300ms",
        ],
        None,
        input,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("undelivered 2"), "{stderr}");
    assert!(stderr.contains("drain deadline passed"), "{stderr}");
}

#[test]
fn emit_refuses_a_bad_duration() {
    let output = emit(
        &["--socket", "/tmp/x.sock", "--drain-timeout", "soon"],
        None,
        String::new(),
    );
    assert_eq!(output.status.code(), Some(2));
}
