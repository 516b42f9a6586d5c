//! Telemetry that leaves the process: run metrics to CloudWatch (`metrics`), step logs to CloudWatch Logs
//! (`logs`), and the redaction every shipped or printed step line goes through (`redact`).

pub mod logs;
pub mod metrics;
pub mod redact;

/// An SDK error as one line: its message and the chain of sources (no credentials are in them).
pub(crate) fn sdk_message(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}
