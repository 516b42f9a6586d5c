//! GitHub webhook intake: request decoding, signature checks, event filters, the Workflow to create,
//! and the HTTP answer. Pure up to `Intake::prepare`; `Intake::handle` adds the `WorkflowSubmitter` call.

pub mod config;
pub mod event;
pub mod filter;
pub mod request;
pub mod signature;
pub mod submit;
pub mod workflow;

use serde_json::json;
use thiserror::Error;

pub use config::{Concurrency, ConfigError, SecretSource, WebhookConfig, secrets_from_secret_string};
pub use event::{Event, EventError, Push};
pub use filter::{IgnoreReason, RefFilter, Target};
pub use request::{
    HEADER_DELIVERY, HEADER_EVENT, HEADER_SIGNATURE, MAX_BODY_BYTES, RequestError, WebhookRequest,
};
pub use signature::{Secret, SecretError, Secrets, SignatureError};
pub use submit::{Created, KubeSubmitter, MemorySubmitter, RunSummary, SubmitError, WorkflowSubmitter};
pub use workflow::{RunSettings, Workflow};

/// What a verified, parsed delivery calls for.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    Pong { hook_id: Option<u64> },
    Ignored { delivery: String, reason: IgnoreReason },
    Start { delivery: String, target: Target, workflow: Box<Workflow> },
}

/// Why a request is refused before anything is started.
#[derive(Debug, Error)]
pub enum Rejection {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Event(#[from] EventError),
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Request(RequestError::TooLarge { .. }) => 413,
            Rejection::Signature(_) => 401,
            Rejection::Request(_) | Rejection::Event(_) => 400,
        }
    }
}

/// The HTTP answer, independent of the gateway that carries it. `body` is JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Response {
    fn new(status: u16, body: serde_json::Value) -> Self {
        Self { status, body }
    }

    /// A 500 that names only a correlation id; the details go to the log under the same id.
    pub fn internal_error(correlation_id: &str) -> Self {
        Self::new(
            500,
            json!({
                "status": "error",
                "error": "internal error: the webhook logs have the details under this correlation id",
                "correlation_id": correlation_id,
            }),
        )
    }

    pub fn rejected(rejection: &Rejection) -> Self {
        Self::new(rejection.status(), json!({"status": "rejected", "error": rejection.to_string()}))
    }

    /// The body as sent.
    pub fn body_text(&self) -> String {
        self.body.to_string()
    }
}

/// The webhook's core: settings, secrets and compiled filters, built once per cold start.
#[derive(Debug, Clone)]
pub struct Intake {
    secrets: Secrets,
    filter: RefFilter,
    run: RunSettings,
    concurrency: Concurrency,
    argo_url: Option<String>,
}

impl Intake {
    pub fn new(config: &WebhookConfig, secrets: Secrets) -> Result<Self, ConfigError> {
        Ok(Self {
            secrets,
            filter: RefFilter::new(&config.branches, &config.tags)?,
            run: RunSettings { namespace: config.namespace.clone(), template: config.template.clone() },
            concurrency: config.concurrency,
            argo_url: config.argo_url.clone(),
        })
    }

    /// Decodes, verifies, parses and filters a delivery, and builds the Workflow it starts. No I/O.
    pub fn prepare(&self, req: &WebhookRequest) -> Result<Prepared, Rejection> {
        req.check_size()?;
        // Authenticate before reading anything else, so unsigned callers learn nothing.
        self.secrets.verify(&req.body, req.header(HEADER_SIGNATURE)?)?;
        let event_name = req.required_header(HEADER_EVENT)?;
        let delivery = req.required_header(HEADER_DELIVERY)?;
        let payload = req.payload()?;
        let push = match event::parse(event_name, &payload)? {
            Event::Ping(p) => return Ok(Prepared::Pong { hook_id: p.hook_id }),
            Event::Other(name) => {
                return Ok(Prepared::Ignored {
                    delivery: delivery.to_owned(),
                    reason: IgnoreReason::Event { name },
                });
            }
            Event::Push(push) => push,
        };
        match self.filter.decide(&push) {
            Err(reason) => Ok(Prepared::Ignored { delivery: delivery.to_owned(), reason }),
            Ok(target) => {
                let workflow = Box::new(workflow::build(&self.run, delivery, &push, &target));
                Ok(Prepared::Start { delivery: delivery.to_owned(), target, workflow })
            }
        }
    }

    fn link(&self, name: &str) -> Option<String> {
        self.argo_url.as_ref().map(|base| format!("{base}/workflows/{}/{name}", self.run.namespace))
    }

    /// Handles one delivery end to end. Never panics on input; unexpected failures become a 500
    /// with a fresh correlation id, logged with the cause.
    pub async fn handle(&self, req: &WebhookRequest, submitter: &dyn WorkflowSubmitter) -> Response {
        let prepared = match self.prepare(req) {
            Ok(p) => p,
            Err(rejection) => {
                tracing::warn!(status = rejection.status(), error = %rejection, "delivery rejected");
                return Response::rejected(&rejection);
            }
        };
        match prepared {
            Prepared::Pong { hook_id } => {
                tracing::info!(?hook_id, "ping");
                Response::new(200, json!({"status": "pong", "hook_id": hook_id}))
            }
            Prepared::Ignored { delivery, reason } => {
                tracing::info!(%delivery, %reason, "delivery ignored");
                Response::new(200, json!({"status": "ignored", "reason": reason.to_string()}))
            }
            Prepared::Start { delivery, target, workflow } => {
                match self.start(&target, &workflow, submitter).await {
                    Ok(response) => {
                        tracing::info!(%delivery, workflow = %workflow.metadata.name, status = response.status, "delivery handled");
                        response
                    }
                    Err(error) => {
                        let correlation_id = uuid::Uuid::new_v4().to_string();
                        tracing::error!(%delivery, %correlation_id, error = %error, "could not start the workflow");
                        Response::internal_error(&correlation_id)
                    }
                }
            }
        }
    }

    async fn start(
        &self,
        target: &Target,
        workflow: &Workflow,
        submitter: &dyn WorkflowSubmitter,
    ) -> Result<Response, SubmitError> {
        let name = &workflow.metadata.name;
        let namespace = &self.run.namespace;
        let already = || {
            Response::new(
                200,
                json!({"status": "already started", "workflow": name, "namespace": namespace, "url": self.link(name)}),
            )
        };
        let mut superseded = Vec::new();
        if self.concurrency == Concurrency::Supersede {
            let selector = workflow::branch_selector(&self.run.template, &target.name);
            let runs = submitter.list(namespace, &selector).await?;
            // A redelivery of a delivery that already ran must not stop the newer runs.
            if runs.iter().any(|r| &r.name == name) {
                return Ok(already());
            }
            for run in
                runs.iter().filter(|r| r.is_active() && r.branch.as_deref() == Some(target.name.as_str()))
            {
                submitter.stop(namespace, &run.name).await?;
                tracing::info!(stopped = %run.name, by = %name, "superseded");
                superseded.push(run.name.clone());
            }
        }
        Ok(match submitter.create(workflow).await? {
            Created::AlreadyExists => already(),
            Created::New => Response::new(
                202,
                json!({
                    "status": "started",
                    "workflow": name,
                    "namespace": namespace,
                    "url": self.link(name),
                    "superseded": superseded,
                }),
            ),
        })
    }
}

#[cfg(test)]
mod tests;
