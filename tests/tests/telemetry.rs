//! Run metrics and step logs reach CloudWatch (moto): `aphex step finalize` of a failed run publishes
//! `AphexPipeline/RunsFailed` = 1 with dimension `Pipeline`, which the infra's `RunsFailedAlarm` watches,
//! and a step's printed lines land in CloudWatch Logs (`APHEX_LOG_GROUP`, stream `<run-id>/<stage>`)
//! with secrets masked.

mod support;

use std::path::Path;

use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, Statistic,
};
use support::{Moto, git, step_command, write_repo};

const ASSEMBLY: &str = "synth-multi-stack-cross-refs";
const PIPELINE: &str = "tele-test";
const GROUP: &str = "/aphex/tele-test";
const TOKEN: &str = "ghp_NotARealTokenButSecret0123";

fn config() -> String {
    format!(
        r#"version: "1.0"
pipeline:
  name: {PIPELINE}
build:
  commands:
    - echo "building with token $GITHUB_TOKEN from https://x-access-token:pw-1234567@example.com/acme/app"
    - echo "fetch failed for token $GITHUB_TOKEN" >&2; exit 3
synth:
  command: "sh synth.sh"
environments:
  - name: dev
    region: us-east-1
    account: "111111111111"
    stacks: [{{name: ProducerStack}}]
"#
    )
}

fn step(
    moto: &Moto,
    store: &Path,
    pod: &Path,
    repo: &Path,
    sha: &str,
    args: &[&str],
) -> std::process::Output {
    step_command(store, pod, repo, sha, "run-9", args)
        .envs(moto.env())
        .env("APHEX_PIPELINE", PIPELINE)
        .env("APHEX_LOG_GROUP", GROUP)
        .env("GITHUB_TOKEN", TOKEN)
        .output()
        .unwrap()
}

fn log_lines(moto: &Moto, stream: &str) -> Vec<String> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config("us-east-1"));
    let out = moto
        .block_on(
            logs.get_log_events().log_group_name(GROUP).log_stream_name(stream).start_from_head(true).send(),
        )
        .unwrap_or_else(|e| panic!("GetLogEvents {GROUP} {stream}: {e:?}"));
    out.events().iter().map(|e| e.message().unwrap_or_default().to_owned()).collect()
}

#[test]
fn a_failed_run_publishes_runs_failed_and_its_step_logs_masked() {
    let moto = Moto::start();
    let repo = tempfile::tempdir().unwrap();
    write_repo(repo.path(), &config(), ASSEMBLY);
    let sha = git(repo.path(), &["rev-parse", "HEAD"]);
    let store = tempfile::tempdir().unwrap();
    let pod = tempfile::tempdir().unwrap();

    // The build fails (exit 3) after printing a token and a URL with credentials.
    let build = step(&moto, store.path(), pod.path(), repo.path(), &sha, &["build"]);
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert!(!build.status.success(), "{stderr}");
    assert!(!stderr.contains(TOKEN) && !stderr.contains("pw-1234567"), "printed a secret:\n{stderr}");

    let pod2 = tempfile::tempdir().unwrap();
    let finalize = step(
        &moto,
        store.path(),
        pod2.path(),
        repo.path(),
        &sha,
        &["finalize", "--status", "Failed", "--no-event"],
    );
    let stderr = String::from_utf8_lossy(&finalize.stderr);
    assert!(finalize.status.success(), "{stderr}");
    assert!(finalize.stdout.is_empty(), "no EMF on stdout when the metrics go to CloudWatch");
    // The stage and run records (what notifications quote) keep the failure, masked.
    for key in ["runs/run-9/stages/build.json", "runs/run-9/record.json"] {
        let text = std::fs::read_to_string(store.path().join(key)).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(
            text.contains("fetch failed for token ***"),
            "{key}: the failure with its last lines: {text}"
        );
        assert!(!text.contains(TOKEN) && !text.contains("pw-1234567"), "{key} keeps a secret: {text}");
    }

    // Logs: a stream per run and stage, as printed, masked.
    let lines = log_lines(&moto, "run-9/build");
    println!("run-9/build in CloudWatch Logs:\n{}", lines.join("\n"));
    let text = lines.join("\n");
    assert!(text.contains("building with token *** from https://***@example.com/acme/app"), "{text}");
    assert!(text.contains("exited with code 3"), "the failure is in the log: {text}");
    assert!(!text.contains(TOKEN) && !text.contains("pw-1234567"), "{text}");
    let finalize_lines = log_lines(&moto, "run-9/finalize").join("\n");
    assert!(finalize_lines.contains("published to CloudWatch namespace AphexPipeline"), "{finalize_lines}");

    // Metrics: the one the alarm watches, with its dimension, and its value.
    let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk_config("us-east-1"));
    let listed =
        moto.block_on(cw.list_metrics().namespace("AphexPipeline").metric_name("RunsFailed").send()).unwrap();
    let dims: Vec<(String, String)> = listed
        .metrics()
        .iter()
        .flat_map(|m| m.dimensions())
        .map(|d| (d.name().unwrap_or_default().to_owned(), d.value().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(dims, [("Pipeline".to_owned(), PIPELINE.to_owned())]);
    let now = std::time::SystemTime::now();
    let query = MetricDataQuery::builder()
        .id("failed")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("AphexPipeline")
                        .metric_name("RunsFailed")
                        .dimensions(Dimension::builder().name("Pipeline").value(PIPELINE).build())
                        .build(),
                )
                .period(300)
                .stat("Sum")
                .build(),
        )
        .build();
    let data = moto
        .block_on(
            cw.get_metric_data()
                .metric_data_queries(query)
                .start_time((now - std::time::Duration::from_secs(3600)).into())
                .end_time((now + std::time::Duration::from_secs(600)).into())
                .send(),
        )
        .unwrap();
    let values: Vec<f64> = data.metric_data_results().iter().flat_map(|r| r.values().to_vec()).collect();
    println!("GetMetricData RunsFailed (Sum, 5 min): {values:?}");
    assert_eq!(values.iter().sum::<f64>(), 1.0, "{data:?}");

    // The infra's alarm, as it synthesizes (threshold 1, >=, Sum over 5 minutes). moto stores alarms and
    // answers DescribeAlarms but does not evaluate them: the state stays what it was set to.
    moto.block_on(
        cw.put_metric_alarm()
            .alarm_name("RunsFailedAlarm")
            .namespace("AphexPipeline")
            .metric_name("RunsFailed")
            .dimensions(Dimension::builder().name("Pipeline").value(PIPELINE).build())
            .statistic(Statistic::Sum)
            .period(300)
            .evaluation_periods(1)
            .threshold(1.0)
            .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
            .send(),
    )
    .unwrap();
    let alarms = moto.block_on(cw.describe_alarms().alarm_names("RunsFailedAlarm").send()).unwrap();
    let state = alarms.metric_alarms().first().and_then(|a| a.state_value()).map(|s| s.as_str().to_owned());
    println!("RunsFailedAlarm state in moto (not evaluated by moto): {state:?}");
    assert!(state.is_some());
}
