//! The side effects of a deploy behind small traits (`StackDeployer` for CloudFormation, `AssetStore`
//! for S3, `Cloud` handing out role-bound instances and SSM reads), and their aws-sdk-rust adapters.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetType, OnStackFailure, Parameter, StackStatus, Tag, TemplateStage,
};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::RoleCache;

/// A failed AWS call, with the operation and the service's message (never credentials).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct CloudError {
    pub operation: &'static str,
    pub message: String,
}

impl CloudError {
    pub fn new(operation: &'static str, message: impl Into<String>) -> Self {
        Self { operation, message: message.into() }
    }
    fn sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        Self { operation, message: sdk_message(&err) }
    }
}

/// `Code: message` of a service error; the whole error chain (without the raw response) otherwise.
pub fn sdk_message<E, R>(err: &SdkError<E, R>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                _ => DisplayErrorContext(e).to_string(),
            }
        }
        other => DisplayErrorContext(other).to_string(),
    }
}

/// A deployed stack as DescribeStacks reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeployedStack {
    pub stack_id: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub outputs: BTreeMap<String, String>,
    pub parameters: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub termination_protection: bool,
    /// SNS topics the stack notifies, whoever attached them.
    pub notification_arns: Vec<String>,
    /// The execution role CloudFormation uses for the stack, if it has one.
    pub role_arn: Option<String>,
}

/// The value a deploy gives one template parameter.
#[derive(Clone, PartialEq, Eq)]
pub enum ParameterValue {
    /// This value. A `secret` one (a NoEcho parameter, a value read from Secrets Manager or an SSM
    /// SecureString) never appears in Debug output, logs or reports.
    Value { value: String, secret: bool },
    /// CloudFormation's `UsePreviousValue`: the value the deployed stack has.
    Previous,
}

impl ParameterValue {
    /// A plain value.
    pub fn plain(value: impl Into<String>) -> Self {
        ParameterValue::Value { value: value.into(), secret: false }
    }
}

impl std::fmt::Debug for ParameterValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParameterValue::Value { secret: true, .. } => f.write_str("****"),
            ParameterValue::Value { value, .. } => write!(f, "{value:?}"),
            ParameterValue::Previous => f.write_str("(previous value)"),
        }
    }
}

/// What to create or update. A setting that is None is not sent, so CloudFormation keeps what the
/// stack has.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StackInput {
    pub stack_name: String,
    pub template_body: Option<String>,
    pub template_url: Option<String>,
    pub parameters: BTreeMap<String, ParameterValue>,
    pub tags: Option<BTreeMap<String, String>>,
    /// The execution role (`RoleARN`).
    pub role_arn: Option<String>,
    pub notification_arns: Option<Vec<String>>,
    pub termination_protection: Option<bool>,
}

/// The outcome of an UpdateStack call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateStarted {
    Started,
    NoChanges,
}

/// One stack event.
#[derive(Debug, Clone, PartialEq)]
pub struct StackEvent {
    pub event_id: String,
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: Option<String>,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
}

/// A resource change of a change set.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceChange {
    /// Add, Modify, Remove, Import, Dynamic.
    pub action: String,
    pub logical_id: String,
    pub resource_type: String,
    /// True, False, Conditional, or empty when unknown.
    pub replacement: String,
}

/// A described change set.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeSetInfo {
    /// CREATE_PENDING, CREATE_IN_PROGRESS, CREATE_COMPLETE, FAILED, ...
    pub status: String,
    pub status_reason: Option<String>,
    pub changes: Vec<ResourceChange>,
}

/// Create or update, for a change set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeSetKind {
    Create,
    Update,
}

/// CloudFormation, for one role and region.
#[async_trait]
pub trait StackDeployer: Send + Sync {
    async fn describe_stack(&self, name: &str) -> Result<Option<DeployedStack>, CloudError>;
    /// The deployed (original) template body.
    async fn template_body(&self, name: &str) -> Result<String, CloudError>;
    async fn create_stack(&self, input: &StackInput) -> Result<(), CloudError>;
    async fn update_stack(&self, input: &StackInput) -> Result<UpdateStarted, CloudError>;
    async fn delete_stack(&self, name: &str) -> Result<(), CloudError>;
    /// Returns the change set's ARN.
    async fn create_change_set(
        &self,
        input: &StackInput,
        change_set_name: &str,
        kind: ChangeSetKind,
    ) -> Result<String, CloudError>;
    async fn describe_change_set(&self, arn: &str) -> Result<ChangeSetInfo, CloudError>;
    async fn execute_change_set(&self, arn: &str) -> Result<(), CloudError>;
    async fn delete_change_set(&self, arn: &str) -> Result<(), CloudError>;
    /// The events at or after `since_ms` (milliseconds since the epoch), newest first, across pages.
    async fn stack_events(&self, name: &str, since_ms: i64) -> Result<Vec<StackEvent>, CloudError>;
    async fn set_termination_protection(&self, name: &str, enabled: bool) -> Result<(), CloudError>;
    /// The stack's newest event, whatever operation it belongs to.
    async fn newest_event(&self, name: &str) -> Result<Option<StackEvent>, CloudError> {
        Ok(self.stack_events(name, i64::MIN).await?.into_iter().next())
    }
}

/// S3, for publishing file assets.
#[async_trait]
pub trait AssetStore: Send + Sync {
    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, CloudError>;
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), CloudError>;
}

/// Hands out role-bound AWS capabilities. `role` None means the caller's own identity.
#[async_trait]
pub trait Cloud: Send + Sync {
    async fn deployer(&self, role: Option<&str>, region: &str) -> Result<Arc<dyn StackDeployer>, CloudError>;
    async fn asset_store(&self, role: Option<&str>, region: &str) -> Result<Arc<dyn AssetStore>, CloudError>;
    /// An SSM parameter's value, None when it does not exist.
    async fn ssm_parameter(
        &self,
        role: Option<&str>,
        region: &str,
        name: &str,
    ) -> Result<Option<String>, CloudError>;
    /// A Secrets Manager secret's `SecretString` (`id`: name or ARN), None when it does not exist.
    async fn secret_value(
        &self,
        role: Option<&str>,
        region: &str,
        id: &str,
    ) -> Result<Option<String>, CloudError>;
    /// The HTTPS URL CloudFormation reads an uploaded template from.
    fn template_url(&self, bucket: &str, key: &str, region: &str) -> String;
}

/// The aws-sdk-rust adapter of [`Cloud`].
#[derive(Debug, Clone)]
pub struct SdkCloud {
    roles: RoleCache,
    endpoint: Option<String>,
    /// SDK clients, built once per (role, region) and shared by every stack deployed with them.
    clients: Arc<std::sync::Mutex<ClientMap>>,
}

/// Clients by (role, region); role None is the caller's own identity.
type ClientMap = HashMap<(Option<String>, String), Clients>;

/// The clients of one (role, region).
#[derive(Debug, Clone)]
struct Clients {
    cloudformation: Arc<SdkStackDeployer>,
    s3: Arc<SdkAssetStore>,
    ssm: aws_sdk_ssm::Client,
    secrets: aws_sdk_secretsmanager::Client,
}

impl SdkCloud {
    pub fn new(run_id: &str) -> Self {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").ok().filter(|e| !e.is_empty());
        Self { roles: RoleCache::new(run_id), endpoint, clients: Default::default() }
    }

    async fn clients(&self, role: Option<&str>, region: &str) -> Result<Clients, CloudError> {
        let key = (role.map(str::to_owned), region.to_owned());
        if let Some(c) = self.lock_clients().get(&key) {
            return Ok(c.clone());
        }
        // The role cache makes this one AssumeRole per (role, region), however many callers race here;
        // building clients from its config is cheap, so a racing duplicate is simply dropped.
        let config = self
            .roles
            .config_for(role, region)
            .await
            .map_err(|e| CloudError::new("sts:AssumeRole", e.to_string()))?;
        let built = Clients {
            cloudformation: Arc::new(SdkStackDeployer {
                client: aws_sdk_cloudformation::Client::new(&config),
            }),
            s3: Arc::new(SdkAssetStore { client: crate::aws::s3_client(&config) }),
            ssm: aws_sdk_ssm::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
        };
        Ok(self.lock_clients().entry(key).or_insert(built).clone())
    }

    fn lock_clients(&self) -> std::sync::MutexGuard<'_, ClientMap> {
        // One insert at a time: a panic elsewhere cannot leave the map half-written.
        self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Cloud for SdkCloud {
    async fn deployer(&self, role: Option<&str>, region: &str) -> Result<Arc<dyn StackDeployer>, CloudError> {
        Ok(self.clients(role, region).await?.cloudformation)
    }

    async fn asset_store(&self, role: Option<&str>, region: &str) -> Result<Arc<dyn AssetStore>, CloudError> {
        Ok(self.clients(role, region).await?.s3)
    }

    async fn ssm_parameter(
        &self,
        role: Option<&str>,
        region: &str,
        name: &str,
    ) -> Result<Option<String>, CloudError> {
        let client = self.clients(role, region).await?.ssm;
        match client.get_parameter().name(name).with_decryption(true).send().await {
            Ok(out) => Ok(out.parameter.and_then(|p| p.value)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(None),
            Err(e) => Err(CloudError::sdk("ssm:GetParameter", e)),
        }
    }

    async fn secret_value(
        &self,
        role: Option<&str>,
        region: &str,
        id: &str,
    ) -> Result<Option<String>, CloudError> {
        let client = self.clients(role, region).await?.secrets;
        match client.get_secret_value().secret_id(id).send().await {
            Ok(out) => Ok(out.secret_string),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(None),
            Err(e) => Err(CloudError::sdk("secretsmanager:GetSecretValue", e)),
        }
    }

    fn template_url(&self, bucket: &str, key: &str, region: &str) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("{}/{bucket}/{key}", endpoint.trim_end_matches('/')),
            // The SDK's endpoint rules know every partition's DNS suffix; for a region they lack,
            // CloudFormation refuses the s3:// form and names the URL.
            None => crate::aws::s3_object_url(bucket, key, region)
                .unwrap_or_else(|| format!("s3://{bucket}/{key}")),
        }
    }
}

/// CloudFormation through aws-sdk-cloudformation.
#[derive(Debug, Clone)]
pub struct SdkStackDeployer {
    pub client: aws_sdk_cloudformation::Client,
}

const CAPABILITIES: [Capability; 3] =
    [Capability::CapabilityIam, Capability::CapabilityNamedIam, Capability::CapabilityAutoExpand];

fn parameters(input: &StackInput) -> Option<Vec<Parameter>> {
    Some(
        input
            .parameters
            .iter()
            .map(|(k, v)| match v {
                ParameterValue::Value { value, .. } => {
                    Parameter::builder().parameter_key(k).parameter_value(value).build()
                }
                ParameterValue::Previous => {
                    Parameter::builder().parameter_key(k).use_previous_value(true).build()
                }
            })
            .collect(),
    )
}

fn tags(input: &StackInput) -> Option<Vec<Tag>> {
    input.tags.as_ref().map(|t| t.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect())
}

/// True for CloudFormation's "nothing to do" answers.
pub fn is_no_changes(message: &str) -> bool {
    message.contains("No updates are to be performed")
        || message.contains("didn't contain changes")
        || message.contains("does not contain changes")
}

#[async_trait]
impl StackDeployer for SdkStackDeployer {
    async fn describe_stack(&self, name: &str) -> Result<Option<DeployedStack>, CloudError> {
        let out = match self.client.describe_stacks().stack_name(name).send().await {
            Ok(out) => out,
            Err(e) => {
                let text = sdk_message(&e);
                if text.contains("does not exist") {
                    return Ok(None);
                }
                return Err(CloudError::new("cloudformation:DescribeStacks", text));
            }
        };
        let Some(stack) = out.stacks.unwrap_or_default().into_iter().next() else { return Ok(None) };
        let status = stack.stack_status.as_ref().map(|s| s.as_str().to_owned()).unwrap_or_default();
        if status == StackStatus::DeleteComplete.as_str() {
            return Ok(None);
        }
        Ok(Some(DeployedStack {
            stack_id: stack.stack_id.unwrap_or_default(),
            status,
            status_reason: stack.stack_status_reason,
            outputs: stack
                .outputs
                .unwrap_or_default()
                .into_iter()
                .filter_map(|o| Some((o.output_key?, o.output_value.unwrap_or_default())))
                .collect(),
            parameters: stack
                .parameters
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| Some((p.parameter_key?, p.parameter_value.unwrap_or_default())))
                .collect(),
            tags: stack
                .tags
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| Some((t.key?, t.value?)))
                .collect(),
            termination_protection: stack.enable_termination_protection.unwrap_or(false),
            notification_arns: stack.notification_arns.unwrap_or_default(),
            role_arn: stack.role_arn,
        }))
    }

    async fn template_body(&self, name: &str) -> Result<String, CloudError> {
        let out = self
            .client
            .get_template()
            .stack_name(name)
            .template_stage(TemplateStage::Original)
            .send()
            .await
            .map_err(|e| CloudError::sdk("cloudformation:GetTemplate", e))?;
        Ok(out.template_body.unwrap_or_default())
    }

    async fn create_stack(&self, input: &StackInput) -> Result<(), CloudError> {
        self.client
            .create_stack()
            .stack_name(&input.stack_name)
            .set_template_body(input.template_body.clone())
            .set_template_url(input.template_url.clone())
            .set_parameters(parameters(input))
            .set_tags(tags(input))
            .set_role_arn(input.role_arn.clone())
            .set_notification_arns(input.notification_arns.clone())
            .set_capabilities(Some(CAPABILITIES.to_vec()))
            .set_enable_termination_protection(input.termination_protection)
            .on_failure(aws_sdk_cloudformation::types::OnFailure::Rollback)
            .send()
            .await
            .map_err(|e| CloudError::sdk("cloudformation:CreateStack", e))?;
        Ok(())
    }

    async fn update_stack(&self, input: &StackInput) -> Result<UpdateStarted, CloudError> {
        let result = self
            .client
            .update_stack()
            .stack_name(&input.stack_name)
            .set_template_body(input.template_body.clone())
            .set_template_url(input.template_url.clone())
            .set_parameters(parameters(input))
            .set_tags(tags(input))
            .set_role_arn(input.role_arn.clone())
            .set_notification_arns(input.notification_arns.clone())
            .set_capabilities(Some(CAPABILITIES.to_vec()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(UpdateStarted::Started),
            Err(e) => {
                let text = sdk_message(&e);
                if is_no_changes(&text) {
                    Ok(UpdateStarted::NoChanges)
                } else {
                    Err(CloudError::new("cloudformation:UpdateStack", text))
                }
            }
        }
    }

    async fn delete_stack(&self, name: &str) -> Result<(), CloudError> {
        self.client
            .delete_stack()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| CloudError::sdk("cloudformation:DeleteStack", e))?;
        Ok(())
    }

    async fn create_change_set(
        &self,
        input: &StackInput,
        change_set_name: &str,
        kind: ChangeSetKind,
    ) -> Result<String, CloudError> {
        let out = self
            .client
            .create_change_set()
            .stack_name(&input.stack_name)
            .change_set_name(change_set_name)
            .change_set_type(match kind {
                ChangeSetKind::Create => ChangeSetType::Create,
                ChangeSetKind::Update => ChangeSetType::Update,
            })
            .description("aphex deploy")
            .set_template_body(input.template_body.clone())
            .set_template_url(input.template_url.clone())
            .set_parameters(parameters(input))
            .set_tags(tags(input))
            .set_role_arn(input.role_arn.clone())
            .set_notification_arns(input.notification_arns.clone())
            .set_capabilities(Some(CAPABILITIES.to_vec()))
            .on_stack_failure(OnStackFailure::Rollback)
            .send()
            .await
            .map_err(|e| CloudError::sdk("cloudformation:CreateChangeSet", e))?;
        out.id.ok_or_else(|| CloudError::new("cloudformation:CreateChangeSet", "no change set id returned"))
    }

    async fn describe_change_set(&self, arn: &str) -> Result<ChangeSetInfo, CloudError> {
        let mut pages = self.client.describe_change_set().change_set_name(arn).into_paginator().send();
        let mut info: Option<ChangeSetInfo> = None;
        while let Some(page) = pages.next().await {
            let out = page.map_err(|e| CloudError::sdk("cloudformation:DescribeChangeSet", e))?;
            let info = info.get_or_insert_with(|| ChangeSetInfo {
                status: out.status.as_ref().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                status_reason: out.status_reason.clone(),
                changes: Vec::new(),
            });
            info.changes.extend(out.changes.unwrap_or_default().into_iter().filter_map(|c| {
                let rc = c.resource_change?;
                Some(ResourceChange {
                    action: rc.action.map(|a| a.as_str().to_owned()).unwrap_or_default(),
                    logical_id: rc.logical_resource_id.unwrap_or_default(),
                    resource_type: rc.resource_type.unwrap_or_default(),
                    replacement: rc.replacement.map(|r| r.as_str().to_owned()).unwrap_or_default(),
                })
            }));
        }
        info.ok_or_else(|| CloudError::new("cloudformation:DescribeChangeSet", "no answer"))
    }

    async fn execute_change_set(&self, arn: &str) -> Result<(), CloudError> {
        self.client
            .execute_change_set()
            .change_set_name(arn)
            .send()
            .await
            .map_err(|e| CloudError::sdk("cloudformation:ExecuteChangeSet", e))?;
        Ok(())
    }

    async fn delete_change_set(&self, arn: &str) -> Result<(), CloudError> {
        self.client
            .delete_change_set()
            .change_set_name(arn)
            .send()
            .await
            .map_err(|e| CloudError::sdk("cloudformation:DeleteChangeSet", e))?;
        Ok(())
    }

    async fn stack_events(&self, name: &str, since_ms: i64) -> Result<Vec<StackEvent>, CloudError> {
        // Pages run newest first: stop at the first event before `since_ms`, so a long-lived stack's
        // history is not read, while a burst of more than one page of new events (a big stack rolling
        // back) is read whole and its first failure is not missed.
        let mut pages = self.client.describe_stack_events().stack_name(name).into_paginator().send();
        let mut events = Vec::new();
        while let Some(page) = pages.next().await {
            let out = page.map_err(|e| CloudError::sdk("cloudformation:DescribeStackEvents", e))?;
            for e in out.stack_events.unwrap_or_default() {
                let event = StackEvent {
                    event_id: e.event_id.unwrap_or_default(),
                    logical_id: e.logical_resource_id.unwrap_or_default(),
                    resource_type: e.resource_type.unwrap_or_default(),
                    status: e.resource_status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                    reason: e.resource_status_reason,
                    timestamp_ms: e.timestamp.and_then(|t| t.to_millis().ok()).unwrap_or_default(),
                };
                if event.timestamp_ms < since_ms {
                    return Ok(events);
                }
                events.push(event);
            }
        }
        Ok(events)
    }

    async fn newest_event(&self, name: &str) -> Result<Option<StackEvent>, CloudError> {
        // One page, newest first: a long-lived stack's history is not read.
        let out = self
            .client
            .describe_stack_events()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| CloudError::sdk("cloudformation:DescribeStackEvents", e))?;
        Ok(out.stack_events.unwrap_or_default().into_iter().next().map(|e| StackEvent {
            event_id: e.event_id.unwrap_or_default(),
            logical_id: e.logical_resource_id.unwrap_or_default(),
            resource_type: e.resource_type.unwrap_or_default(),
            status: e.resource_status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            reason: e.resource_status_reason,
            timestamp_ms: e.timestamp.and_then(|t| t.to_millis().ok()).unwrap_or_default(),
        }))
    }

    async fn set_termination_protection(&self, name: &str, enabled: bool) -> Result<(), CloudError> {
        self.client
            .update_termination_protection()
            .stack_name(name)
            .enable_termination_protection(enabled)
            .send()
            .await
            .map_err(|e| CloudError::sdk("cloudformation:UpdateTerminationProtection", e))?;
        Ok(())
    }
}

/// S3 through aws-sdk-s3.
#[derive(Debug, Clone)]
pub struct SdkAssetStore {
    pub client: aws_sdk_s3::Client,
}

#[async_trait]
impl AssetStore for SdkAssetStore {
    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, CloudError> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
            Err(e) => Err(CloudError::sdk("s3:HeadObject", e)),
        }
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), CloudError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .map_err(|e| CloudError::sdk("s3:PutObject", e))?;
        Ok(())
    }
}
