//! Feeds arbitrary bytes, in arbitrary chunks, to the agent's frame decoder:
//! it must never panic, never consume more than the frame its header
//! announced, and end every stream with a frame, a clean end or a typed error.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use warden_proto::codec::{FrameCodec, HEADER_LEN, parse_header};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, bytes)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut codec = FrameCodec;
    let mut buf = BytesMut::new();
    let mut offset = 0;
    for piece in bytes.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(_)) => {
                    let header: [u8; HEADER_LEN] =
                        bytes[offset..offset + HEADER_LEN].try_into().unwrap();
                    let (_, len) = parse_header(header).unwrap();
                    assert_eq!(before - buf.len(), HEADER_LEN + len);
                    offset += HEADER_LEN + len;
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = codec.decode_eof(&mut buf);
});
