//! Run metrics in CloudWatch: the data points of a run ([`Datum`], built by
//! `steps::finalize::run_metrics`), published with `PutMetricData` behind [`MetricPublisher`]
//! ([`CloudWatchMetrics`]; [`MemoryMetrics`] in tests).
//!
//! [`NAMESPACE`], [`RUNS_FAILED`] and [`DIMENSION_PIPELINE`] are what the infra's `RunsFailedAlarm`
//! watches (`infra/lib/aphex-pipeline-stack.ts`: `METRIC_NAMESPACE`, `RUNS_FAILED_METRIC`, dimension
//! `Pipeline` = `pipelineName`); a test reads the infra source and fails when they differ.

use std::sync::Mutex;

use async_trait::async_trait;

/// CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "AphexPipeline";
/// 1 for a failed run, 0 otherwise (the alarm sums it over 5 minutes).
pub const RUNS_FAILED: &str = "RunsFailed";
/// The dimension naming the pipeline (`pipeline.name`).
pub const DIMENSION_PIPELINE: &str = "Pipeline";
/// Data points per `PutMetricData` request (CloudWatch takes up to 1,000 and 1 MB; these are small).
pub const BATCH: usize = 500;

/// A CloudWatch unit this tool uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

/// One data point.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    /// Metric name, e.g. [`RUNS_FAILED`].
    pub name: String,
    /// Dimensions in order, e.g. `[("Pipeline", "aphex-pipeline")]`.
    pub dimensions: Vec<(String, String)>,
    pub value: f64,
    pub unit: Unit,
    /// When it happened (the run's end).
    pub timestamp: time::OffsetDateTime,
}

/// Why metrics could not be published. The message never holds credentials.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("CloudWatch PutMetricData to namespace {namespace} failed: {message}")]
    Put { namespace: String, message: String },
}

/// Publishes data points to a namespace.
#[async_trait]
pub trait MetricPublisher: Send + Sync {
    async fn put(&self, namespace: &str, data: &[Datum]) -> Result<(), MetricsError>;
}

/// `PutMetricData` through aws-sdk-cloudwatch, in batches of [`BATCH`].
#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    pub client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchMetrics {
    /// A client from the default credential chain and region; honours `AWS_ENDPOINT_URL`.
    pub async fn from_env() -> Self {
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self { client: aws_sdk_cloudwatch::Client::new(&shared) }
    }
}

#[async_trait]
impl MetricPublisher for CloudWatchMetrics {
    async fn put(&self, namespace: &str, data: &[Datum]) -> Result<(), MetricsError> {
        use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
        for chunk in data.chunks(BATCH) {
            let data: Vec<MetricDatum> = chunk
                .iter()
                .map(|d| {
                    let millis = (d.timestamp.unix_timestamp_nanos() / 1_000_000) as i64;
                    MetricDatum::builder()
                        .metric_name(&d.name)
                        .set_dimensions(Some(
                            d.dimensions
                                .iter()
                                .map(|(n, v)| Dimension::builder().name(n).value(v).build())
                                .collect(),
                        ))
                        .value(d.value)
                        .unit(match d.unit {
                            Unit::Count => StandardUnit::Count,
                            Unit::Milliseconds => StandardUnit::Milliseconds,
                        })
                        .timestamp(aws_smithy_types::DateTime::from_millis(millis))
                        .build()
                })
                .collect();
            self.client
                .put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(data))
                .send()
                .await
                .map_err(|e| MetricsError::Put {
                    namespace: namespace.to_owned(),
                    message: crate::telemetry::sdk_message(&e),
                })?;
        }
        Ok(())
    }
}

/// Keeps every put in memory (tests).
#[derive(Debug, Default)]
pub struct MemoryMetrics {
    pub puts: Mutex<Vec<(String, Datum)>>,
}

#[async_trait]
impl MetricPublisher for MemoryMetrics {
    async fn put(&self, namespace: &str, data: &[Datum]) -> Result<(), MetricsError> {
        if let Ok(mut puts) = self.puts.lock() {
            puts.extend(data.iter().map(|d| (namespace.to_owned(), d.clone())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The infra's alarm and this code name the same metric: one source, checked against the other.
    #[test]
    fn the_infra_alarm_watches_these_names() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/lib/aphex-pipeline-stack.ts");
        let infra = std::fs::read_to_string(path).unwrap();
        for line in [
            format!("export const METRIC_NAMESPACE = '{NAMESPACE}';"),
            format!("export const RUNS_FAILED_METRIC = '{RUNS_FAILED}';"),
            format!("dimensionsMap: {{ {DIMENSION_PIPELINE}: c.pipelineName }}"),
        ] {
            assert!(infra.contains(&line), "{path} lacks `{line}`");
        }
    }
}
