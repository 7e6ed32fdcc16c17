//! `coder.agent.v2.BoundaryLog`, written by hand so that it encodes its fields
//! in the reference (Go) encoder's order.
//!
//! prost's derive sorts fields by tag number, oneof members included, so it
//! would write `http_request` (3) before `sequence_number` (4). The Go
//! encoder writes plain fields first and oneof members last, and existing
//! boundary clients produce exactly those bytes; the test vectors pin them.
//! Both orders decode the same, but byte-for-byte compatibility is the
//! contract, so this one message gets a hand-written `prost::Message`.
//! Everything else (the nested `HttpRequest`, the `Resource` oneof) is still
//! derived.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

/// One allow/deny decision of the sandbox (see `proto/coder/agent/v2/boundary.proto`).
#[derive(Clone, PartialEq, Eq, Hash, Default, Debug)]
pub struct BoundaryLog {
    pub allowed: bool,
    /// When boundary decided. Absent means unknown, never the Unix epoch.
    pub time: Option<prost_types::Timestamp>,
    /// Per session, starts at 0; shared by allowed and denied records.
    pub sequence_number: i32,
    pub resource: Option<boundary_log::Resource>,
}

/// Nested message and oneof types of [`BoundaryLog`].
pub mod boundary_log {
    #[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
    pub struct HttpRequest {
        #[prost(string, tag = "1")]
        pub method: String,
        /// Fully qualified URL.
        #[prost(string, tag = "2")]
        pub url: String,
        /// The allow rule that matched; set only when allowed.
        #[prost(string, tag = "3")]
        pub matched_rule: String,
    }

    #[derive(Clone, PartialEq, Eq, Hash, prost::Oneof)]
    pub enum Resource {
        #[prost(message, tag = "3")]
        HttpRequest(HttpRequest),
    }
}

impl Message for BoundaryLog {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.allowed {
            encoding::bool::encode(1, &self.allowed, buf);
        }
        if let Some(time) = &self.time {
            encoding::message::encode(2, time, buf);
        }
        if self.sequence_number != 0 {
            encoding::int32::encode(4, &self.sequence_number, buf);
        }
        if let Some(resource) = &self.resource {
            resource.encode(buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let in_field = |mut err: DecodeError, field: &'static str| {
            err.push("BoundaryLog", field);
            err
        };
        match tag {
            1 => encoding::bool::merge(wire_type, &mut self.allowed, buf, ctx)
                .map_err(|e| in_field(e, "allowed")),
            2 => encoding::message::merge(
                wire_type,
                self.time.get_or_insert_with(Default::default),
                buf,
                ctx,
            )
            .map_err(|e| in_field(e, "time")),
            3 => boundary_log::Resource::merge(&mut self.resource, tag, wire_type, buf, ctx)
                .map_err(|e| in_field(e, "resource")),
            4 => encoding::int32::merge(wire_type, &mut self.sequence_number, buf, ctx)
                .map_err(|e| in_field(e, "sequence_number")),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        (if self.allowed {
            encoding::bool::encoded_len(1, &self.allowed)
        } else {
            0
        }) + self
            .time
            .as_ref()
            .map_or(0, |time| encoding::message::encoded_len(2, time))
            + (if self.sequence_number != 0 {
                encoding::int32::encoded_len(4, &self.sequence_number)
            } else {
                0
            })
            + self.resource.as_ref().map_or(0, |r| r.encoded_len())
    }

    fn clear(&mut self) {
        *self = BoundaryLog::default();
    }
}
