//! Feeds arbitrary bytes to the control plane's decoding of an agent API
//! call: the bytes of a `warden.agentapi.v2.ReportBoundaryLogsRequest` (the
//! gRPC message body) to the domain types the server ingests. Nothing may
//! panic; every record of a batch is either accepted or rejected with a
//! reason (none lost, none invented); an accepted record survives the trip
//! back to the wire unchanged; a batch is refused only for its id or its
//! receive time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use warden_proto::domain::{AuditRecord, BatchError, IngestBatch};
use warden_proto::wire::agentapi::ReportBoundaryLogsRequest;
use warden_proto::wire::BoundaryLog;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = ReportBoundaryLogsRequest::decode(data) else {
        return;
    };
    for batch in request.batches {
        let sent = batch.logs.as_ref().map_or(0, |l| l.logs.len());
        let batch_id = batch.batch_id.clone();
        match IngestBatch::try_from(batch) {
            Ok(ingest) => {
                assert_eq!(ingest.record_count(), sent);
                if let Some(logs) = &ingest.logs {
                    for record in &logs.records {
                        let wire = BoundaryLog::from(record);
                        let back = AuditRecord::try_from(wire).expect("an accepted record stays valid");
                        assert_eq!(&back, record);
                    }
                    for rejection in &logs.rejected {
                        assert!(!rejection.reason().is_empty());
                    }
                }
            }
            Err(BatchError::BadBatchId(id)) => assert_eq!(id, batch_id),
            Err(BatchError::BadReceivedAt(_)) => {}
        }
    }
});
