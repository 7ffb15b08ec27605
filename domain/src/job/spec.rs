//! What a job is asked to do and what it gave back, typed where the meaning is known. The
//! events keep carrying JSON objects (their payloads are a published contract); these types
//! are how Keyframe reads and writes those objects.

use crate::media::{AnalysisReport, Span};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The parameters of a `clip` job: the succeeded analysis it cuts from, how many highlights the
/// client asked for, and the spans chosen from that analysis when the job was requested (so the
/// worker needs nothing else).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipParameters {
    /// The `analyze` job whose highlights are cut.
    pub source_job_id: Uuid,
    /// How many highlights the client asked for, if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The spans to cut, best first.
    pub clips: Vec<Span>,
    /// Whatever else the client sent, kept as sent.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl ClipParameters {
    /// The parameters as the events carry them.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Reads the parameters of a clip job; `Err` says what is wrong with them.
    pub fn read(parameters: &serde_json::Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(parameters)
    }
}

/// Reads the result of an `analyze` job.
pub fn read_analysis(result: &serde_json::Value) -> Result<AnalysisReport, serde_json::Error> {
    AnalysisReport::deserialize(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_parameters_keep_what_the_client_sent_and_read_back_the_same() {
        let source = Uuid::now_v7();
        let sent = serde_json::json!({
            "source_job_id": source.to_string(),
            "count": 2,
            "note": "for the trailer",
            "clips": [{"start_ms": 1000, "end_ms": 4000}],
        });
        let read = ClipParameters::read(&sent).expect("readable");
        assert_eq!(read.source_job_id, source);
        assert_eq!(read.count, Some(2));
        assert_eq!(
            read.clips,
            vec![Span {
                start_ms: 1000,
                end_ms: 4000
            }]
        );
        assert_eq!(read.to_value(), sent, "the payload is the object that was sent");
    }

    #[test]
    fn clip_parameters_without_clips_do_not_read() {
        let sent = serde_json::json!({ "source_job_id": Uuid::now_v7().to_string() });
        assert!(ClipParameters::read(&sent).is_err());
    }
}
