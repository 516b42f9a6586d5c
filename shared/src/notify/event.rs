//! The events the `notify` Lambda receives through EventBridge: AphexPipeline's own run status event
//! (published by `aphex step finalize`) and CloudFormation's "Stack Status Change".

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::NotifyError;
use crate::config::{Notifications, NotifyOn};

/// EventBridge `source` of every pipeline status event.
pub const PIPELINE_SOURCE: &str = "aphex.pipeline";
/// `detail-type` of [`RunStatus::Started`].
pub const DETAIL_TYPE_STARTED: &str = "Pipeline Run Started";
/// `detail-type` of [`RunStatus::Succeeded`].
pub const DETAIL_TYPE_SUCCEEDED: &str = "Pipeline Run Succeeded";
/// `detail-type` of [`RunStatus::Failed`].
pub const DETAIL_TYPE_FAILED: &str = "Pipeline Run Failed";
/// `detail-type` of [`RunStatus::WaitingForApproval`].
pub const DETAIL_TYPE_WAITING_FOR_APPROVAL: &str = "Pipeline Run Waiting For Approval";
/// EventBridge `source` of CloudFormation's events.
pub const CLOUDFORMATION_SOURCE: &str = "aws.cloudformation";
/// `detail-type` of CloudFormation's stack status events.
pub const DETAIL_TYPE_STACK_STATUS_CHANGE: &str = "CloudFormation Stack Status Change";

/// Where a run stands. Each status is published with its own `detail-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunStatus {
    /// The run started (never notifies: `notifications.on` has no such outcome; kept for listeners).
    Started,
    /// Every stage succeeded.
    Succeeded,
    /// A stage failed; `stage`, `failedStack` and `failureReason` say where and why.
    Failed,
    /// The run is suspended at a manual approval gate before `environment`.
    WaitingForApproval,
}

impl RunStatus {
    /// Every status, in the order a run can pass through them.
    pub const ALL: [RunStatus; 4] =
        [RunStatus::Started, RunStatus::WaitingForApproval, RunStatus::Succeeded, RunStatus::Failed];

    /// The EventBridge `detail-type` this status is published with.
    pub fn detail_type(self) -> &'static str {
        match self {
            RunStatus::Started => DETAIL_TYPE_STARTED,
            RunStatus::Succeeded => DETAIL_TYPE_SUCCEEDED,
            RunStatus::Failed => DETAIL_TYPE_FAILED,
            RunStatus::WaitingForApproval => DETAIL_TYPE_WAITING_FOR_APPROVAL,
        }
    }

    /// The status published with `detail_type`, if it is one of ours.
    pub fn from_detail_type(detail_type: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.detail_type() == detail_type)
    }

    /// The `notifications.on` outcome this status belongs to (`None`: never notifies).
    pub fn outcome(self) -> Option<NotifyOn> {
        match self {
            RunStatus::Started => None,
            RunStatus::Succeeded => Some(NotifyOn::Success),
            RunStatus::Failed => Some(NotifyOn::Failure),
            RunStatus::WaitingForApproval => Some(NotifyOn::Approval),
        }
    }
}

/// Who hears about this run: `notifications` of the run's `aphex-config.yaml`, carried in the event so
/// the `notify` function needs no access to the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationSettings {
    /// Secrets Manager ARN or name of the secret holding the Slack incoming-webhook URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_webhook_secret: Option<String>,
    /// An extra SNS topic to publish to (the pipeline's own topic, with the email subscriptions, is
    /// configured on the function).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sns_topic_arn: Option<String>,
    /// Which outcomes notify.
    #[serde(default = "crate::config::model::defaults::notify_on")]
    pub on: Vec<NotifyOn>,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            slack_webhook_secret: None,
            sns_topic_arn: None,
            on: crate::config::model::defaults::notify_on(),
        }
    }
}

impl From<&Notifications> for NotificationSettings {
    fn from(n: &Notifications) -> Self {
        Self {
            slack_webhook_secret: n.slack.as_ref().map(|s| s.webhook_secret.clone()),
            sns_topic_arn: n.sns_topic_arn.clone(),
            on: n.on.clone(),
        }
    }
}

/// The CloudFormation stack that made a run fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailedStack {
    /// The stack's CloudFormation name.
    pub stack_name: String,
    /// The stack's ARN, when CloudFormation had assigned one (it makes the console link exact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_id: Option<String>,
    /// The account the stack lives in.
    pub account: String,
    /// The region the stack lives in.
    pub region: String,
    /// The stack's last status, e.g. `UPDATE_ROLLBACK_COMPLETE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// The `detail` of a pipeline status event (`source: aphex.pipeline`, `detail-type` from
/// [`RunStatus::detail_type`]). `aphex step finalize` publishes it; the `notify` Lambda consumes it.
///
/// JSON field names are camelCase. Publish with `detail_type()` and `detail_json()`:
/// ```
/// use aphex::notify::{PipelineStatusEvent, RunStatus, PIPELINE_SOURCE};
/// let event = PipelineStatusEvent::new("run-1", "aphex-pipeline", "acme/app", "main", "0123abc", RunStatus::Started);
/// assert_eq!(event.detail_type(), "Pipeline Run Started");
/// let detail = event.detail_json().unwrap();
/// assert!(detail.contains("\"commitSha\":\"0123abc\""));
/// # let _ = PIPELINE_SOURCE;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatusEvent {
    /// The run's id (the Argo Workflow name, or the local run's id).
    pub run_id: String,
    /// `pipeline.name` of the config.
    pub pipeline: String,
    /// The repository, `owner/name` (GitHub) or a clone URL.
    pub repository: String,
    /// The pushed branch (or tag).
    pub branch: String,
    /// The commit the run builds and deploys.
    pub commit_sha: String,
    /// Who pushed the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Where the run stands; must agree with the event's `detail-type`.
    pub status: RunStatus,
    /// The stage the status is about: the failed stage (`build`, `deploy`, ...), or the gate's stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The environment the stage is about (failed deploy or tests, or the environment awaiting approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// Run time so far (or in total, for a finished run), in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
    /// The stack whose deploy failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_stack: Option<FailedStack>,
    /// Why the run failed (CloudFormation's status reason, the failing command's last lines, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Link to the run in the Argo UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argo_url: Option<String>,
    /// How to pass the gate of a [`RunStatus::WaitingForApproval`] run: the exact `argo resume` command,
    /// or what the local runner's prompt expects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve_command: Option<String>,
    /// Who hears about it (from the config's `notifications`; absent: the function's defaults).
    #[serde(default)]
    pub notifications: NotificationSettings,
}

impl PipelineStatusEvent {
    /// An event with the required fields; fill the optional ones by assignment.
    pub fn new(
        run_id: impl Into<String>,
        pipeline: impl Into<String>,
        repository: impl Into<String>,
        branch: impl Into<String>,
        commit_sha: impl Into<String>,
        status: RunStatus,
    ) -> Self {
        Self {
            run_id: run_id.into(),
            pipeline: pipeline.into(),
            repository: repository.into(),
            branch: branch.into(),
            commit_sha: commit_sha.into(),
            author: None,
            status,
            stage: None,
            environment: None,
            started_at: None,
            duration_seconds: None,
            failed_stack: None,
            failure_reason: None,
            argo_url: None,
            approve_command: None,
            notifications: NotificationSettings::default(),
        }
    }

    /// The EventBridge `source` to publish with.
    pub fn source(&self) -> &'static str {
        PIPELINE_SOURCE
    }

    /// The EventBridge `detail-type` to publish with.
    pub fn detail_type(&self) -> &'static str {
        self.status.detail_type()
    }

    /// The EventBridge `Detail` string (JSON).
    pub fn detail_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// The whole EventBridge event as a rule target receives it (tests, local runs).
    pub fn to_eventbridge_envelope(&self, account: &str, region: &str, time: OffsetDateTime) -> Value {
        let time = time.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        serde_json::json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": self.detail_type(),
            "source": PIPELINE_SOURCE,
            "account": account,
            "time": time,
            "region": region,
            "resources": [],
            "detail": self,
        })
    }
}

/// The `status-details` of a CloudFormation stack status event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StackStatusDetails {
    /// The stack status, e.g. `UPDATE_ROLLBACK_COMPLETE`.
    pub status: String,
    /// CloudFormation's reason (may be empty).
    #[serde(default)]
    pub status_reason: Option<String>,
}

/// A CloudFormation "Stack Status Change" event (`source: aws.cloudformation`), with the envelope's
/// account and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StackStatusChange {
    /// The stack's ARN (`arn:aws:cloudformation:REGION:ACCOUNT:stack/NAME/UUID`).
    pub stack_id: String,
    /// The new status and its reason.
    pub status_details: StackStatusDetails,
    /// Token shared by every event of one stack operation.
    #[serde(default)]
    pub client_request_token: Option<String>,
    /// The envelope's `account`.
    #[serde(skip)]
    pub account: String,
    /// The envelope's `region`.
    #[serde(skip)]
    pub region: String,
}

impl StackStatusChange {
    /// The stack's name, from its ARN (the ARN itself when it has no `stack/NAME/` part).
    pub fn stack_name(&self) -> &str {
        self.stack_id
            .split_once(":stack/")
            .and_then(|(_, rest)| rest.split('/').next())
            .filter(|name| !name.is_empty())
            .unwrap_or(&self.stack_id)
    }

    /// The outcome this status belongs to; `None` for in-progress and other transient statuses.
    pub fn outcome(&self) -> Option<NotifyOn> {
        let status = self.status_details.status.as_str();
        match status {
            // Terminal successes. Deletes are routine in a deployment pipeline's account too.
            "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "DELETE_COMPLETE" | "IMPORT_COMPLETE" => {
                Some(NotifyOn::Success)
            }
            // A failed create ends in ROLLBACK_COMPLETE, a failed update in UPDATE_ROLLBACK_COMPLETE.
            "ROLLBACK_COMPLETE" | "UPDATE_ROLLBACK_COMPLETE" | "IMPORT_ROLLBACK_COMPLETE" => {
                Some(NotifyOn::Failure)
            }
            _ if status.ends_with("_FAILED") => Some(NotifyOn::Failure),
            _ => None,
        }
    }
}

/// An event the `notify` function handles.
#[derive(Debug, Clone, PartialEq)]
pub enum IncomingEvent {
    /// A pipeline run changed status.
    Pipeline(Box<PipelineStatusEvent>),
    /// A CloudFormation stack changed status.
    Stack(StackStatusChange),
}

/// Reads an EventBridge event (the whole envelope, as a rule target receives it).
pub fn parse_event(event: &Value) -> Result<IncomingEvent, NotifyError> {
    let envelope = event.as_object().ok_or_else(|| {
        NotifyError::Malformed(format!("expected an EventBridge event object, got {}", kind(event)))
    })?;
    let field = |name: &str| -> Result<&str, NotifyError> {
        envelope.get(name).and_then(Value::as_str).ok_or_else(|| {
            NotifyError::Malformed(format!("the EventBridge envelope has no string field `{name}`"))
        })
    };
    let source = field("source")?;
    let detail_type = field("detail-type")?;
    let detail = envelope.get("detail").filter(|d| d.is_object()).ok_or_else(|| {
        NotifyError::Malformed(format!("`{detail_type}` event from `{source}` has no `detail` object"))
    })?;

    match (source, detail_type) {
        (PIPELINE_SOURCE, _) => {
            let expected = RunStatus::from_detail_type(detail_type).ok_or_else(|| {
                NotifyError::Malformed(format!(
                    "unknown detail-type `{detail_type}` from `{PIPELINE_SOURCE}`; expected one of {}",
                    RunStatus::ALL.map(|s| format!("`{}`", s.detail_type())).join(", ")
                ))
            })?;
            let run: PipelineStatusEvent = serde_json::from_value(detail.clone()).map_err(|e| {
                NotifyError::Malformed(format!("detail of `{detail_type}` is not a PipelineStatusEvent: {e}"))
            })?;
            if run.status != expected {
                return Err(NotifyError::Malformed(format!(
                    "detail-type `{detail_type}` disagrees with detail.status `{}`",
                    serde_json::to_value(run.status).unwrap_or_default().as_str().unwrap_or_default()
                )));
            }
            Ok(IncomingEvent::Pipeline(Box::new(run)))
        }
        (CLOUDFORMATION_SOURCE, DETAIL_TYPE_STACK_STATUS_CHANGE) => {
            let mut change: StackStatusChange = serde_json::from_value(detail.clone()).map_err(|e| {
                NotifyError::Malformed(format!(
                    "detail of `{DETAIL_TYPE_STACK_STATUS_CHANGE}` is malformed: {e}"
                ))
            })?;
            change.account = field("account")?.to_owned();
            change.region = field("region")?.to_owned();
            Ok(IncomingEvent::Stack(change))
        }
        _ => Err(NotifyError::Malformed(format!(
            "unsupported event: source `{source}`, detail-type `{detail_type}`; the notify function handles \
             `{PIPELINE_SOURCE}` run status events and `{CLOUDFORMATION_SOURCE}` `{DETAIL_TYPE_STACK_STATUS_CHANGE}` \
             events (check the EventBridge rule's pattern)"
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
