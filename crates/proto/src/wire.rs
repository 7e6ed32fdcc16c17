//! Generated protobuf types. Module nesting mirrors the proto packages
//! because prost refers across packages with `super::` paths.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

pub mod reference_order;

pub mod coder {
    pub mod agent {
        pub mod v2 {
            tonic::include_proto!("coder.agent.v2");
            pub use crate::wire::reference_order::{BoundaryLog, boundary_log};
        }
    }
    pub mod boundarylogproxy {
        pub mod codec {
            pub mod v1 {
                tonic::include_proto!("coder.boundarylogproxy.codec.v1");
            }
        }
    }
}

pub mod warden {
    pub mod agent {
        pub mod v1 {
            tonic::include_proto!("warden.agent.v1");
        }
    }
    pub mod ack {
        pub mod v1 {
            tonic::include_proto!("warden.ack.v1");
        }
    }
    pub mod agentapi {
        pub mod v2 {
            tonic::include_proto!("warden.agentapi.v2");
        }
    }
}

pub use coder::agent::v2::{BoundaryLog, ReportBoundaryLogsRequest, boundary_log};
pub use coder::boundarylogproxy::codec::v1::{BoundaryMessage, BoundaryStatus, boundary_message};
pub use prost_types::Timestamp;
pub use warden::ack::v1::{AckAccepted, AckRequest, FrameAck, frame_ack};
/// What the agent keeps in its spool besides the batches (entry headers).
pub use warden::agent::v1 as spool;
/// The agent API (gRPC service, batches, manifest).
pub use warden::agentapi::v2 as agentapi;
