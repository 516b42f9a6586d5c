//! GitHub webhook intake: request decoding, signature checks, event filters, the Workflow to create,
//! and the HTTP answer. Pure up to `Intake::prepare`; `Intake::handle` adds the `WorkflowSubmitter` call.

pub mod config;
pub mod event;
pub mod filter;
pub mod ledger;
pub mod request;
pub mod signature;
pub mod submit;
pub mod triggers;
pub mod workflow;

use serde_json::json;
use thiserror::Error;

pub use config::{Concurrency, ConfigError, SecretSource, WebhookConfig, secrets_from_secret_string};
pub use event::{Event, EventError, Push};
pub use filter::{IgnoreReason, RefFilter, Target};
pub use ledger::{Claim, Entry, EntryState, Ledger, LedgerError, MemoryLedger, NoLedger, S3Ledger};
pub use request::{
    HEADER_DELIVERY, HEADER_EVENT, HEADER_SIGNATURE, MAX_BODY_BYTES, RequestError, WebhookRequest,
};
pub use signature::{Secret, SecretError, Secrets, SignatureError};
pub use submit::{Created, KubeSubmitter, MemorySubmitter, RunSummary, SubmitError, WorkflowSubmitter};
pub use triggers::{
    NoLiveTriggers, TemplateTriggers, TriggerError, TriggerSettings, TriggerSource, Triggers,
};
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
    /// `APHEX_BRANCHES`, `APHEX_TAGS`, `APHEX_CONCURRENCY`: each, when set, beats the live template.
    overrides: TriggerSettings,
    /// The overrides over the defaults: what decides without a live template ([`Intake::prepare`]).
    offline: Decider,
    run: RunSettings,
    argo_url: Option<String>,
}

/// Trigger settings with their compiled globs.
#[derive(Debug, Clone)]
struct Decider {
    triggers: Triggers,
    filter: RefFilter,
}

impl Decider {
    fn new(triggers: Triggers) -> Result<Self, filter::FilterError> {
        let filter = RefFilter::from_sources(
            &triggers.branches,
            triggers.branches_from,
            &triggers.tags,
            triggers.tags_from,
        )?;
        Ok(Self { triggers, filter })
    }
}

/// A verified, parsed delivery: answered already, or a push still to decide.
enum Verified {
    Done(Prepared),
    Push { delivery: String, push: Box<Push> },
}

/// The webhook's peers: the cluster's Workflows, the delivery ledger, the live trigger settings.
#[derive(Clone, Copy)]
pub struct Peers<'a> {
    pub submitter: &'a dyn WorkflowSubmitter,
    pub ledger: &'a dyn Ledger,
    pub triggers: &'a dyn TriggerSource,
}

impl Intake {
    pub fn new(config: &WebhookConfig, secrets: Secrets) -> Result<Self, ConfigError> {
        let overrides = config.overrides();
        let offline = Decider::new(overrides.resolve(&TriggerSettings::default()))?;
        Ok(Self {
            secrets,
            overrides,
            offline,
            run: RunSettings { namespace: config.namespace.clone(), template: config.template.clone() },
            argo_url: config.argo_url.clone(),
        })
    }

    /// Decodes, verifies, parses and filters a delivery with the `APHEX_*` settings and the config's
    /// defaults (no live template), and builds the Workflow it starts. No I/O.
    pub fn prepare(&self, req: &WebhookRequest) -> Result<Prepared, Rejection> {
        Ok(match self.verify(req)? {
            Verified::Done(prepared) => prepared,
            Verified::Push { delivery, push } => self.decide(&self.offline, delivery, &push),
        })
    }

    fn verify(&self, req: &WebhookRequest) -> Result<Verified, Rejection> {
        req.check_size()?;
        // Authenticate before reading anything else, so unsigned callers learn nothing.
        self.secrets.verify(&req.body, req.header(HEADER_SIGNATURE)?)?;
        let event_name = req.required_header(HEADER_EVENT)?;
        let delivery = req.required_header(HEADER_DELIVERY)?.to_owned();
        let payload = req.payload()?;
        Ok(match event::parse(event_name, &payload)? {
            Event::Ping(p) => Verified::Done(Prepared::Pong { hook_id: p.hook_id }),
            Event::Other(name) => {
                Verified::Done(Prepared::Ignored { delivery, reason: IgnoreReason::Event { name } })
            }
            Event::Push(push) => Verified::Push { delivery, push },
        })
    }

    fn decide(&self, decider: &Decider, delivery: String, push: &Push) -> Prepared {
        match decider.filter.decide(push) {
            Err(reason) => Prepared::Ignored { delivery, reason },
            Ok(target) => {
                let workflow = Box::new(workflow::build(&self.run, &delivery, push, &target));
                Prepared::Start { delivery, target, workflow }
            }
        }
    }

    /// The settings that decide a push now: the overrides over the live template's annotations.
    async fn decider(&self, source: &dyn TriggerSource) -> Result<Decider, String> {
        let live = source.live(&self.run.namespace, &self.run.template).await.map_err(|e| e.to_string())?;
        if live == TriggerSettings::default() {
            return Ok(self.offline.clone());
        }
        Decider::new(self.overrides.resolve(&live)).map_err(|e| format!("the live WorkflowTemplate's {e}"))
    }

    fn link(&self, name: &str) -> Option<String> {
        self.argo_url.as_ref().map(|base| format!("{base}/workflows/{}/{name}", self.run.namespace))
    }

    /// [`Intake::handle_with`] without a delivery ledger or a live template: the `APHEX_*` settings
    /// decide, and the Workflow-name 409 is the only deduplication.
    pub async fn handle(&self, req: &WebhookRequest, submitter: &dyn WorkflowSubmitter) -> Response {
        self.handle_with(req, Peers { submitter, ledger: &NoLedger, triggers: &NoLiveTriggers }).await
    }

    /// Handles one delivery end to end. Never panics on input; unexpected failures become a 500
    /// with a fresh correlation id, logged with the cause.
    ///
    /// A push is decided by the trigger settings of the live WorkflowTemplate (`peers.triggers`, see
    /// [`triggers`]), each overridden by its `APHEX_*` variable when set.
    ///
    /// A delivery that starts a run is first claimed in `peers.ledger` (state `pending`); a delivery
    /// whose record says `started` answers 200 "already started" without touching the cluster, whatever
    /// the age of its Workflow. A `pending` record (a concurrent attempt, or one that crashed between
    /// the claim and the create) goes on to create the Workflow, which the 409 on its name keeps to one.
    /// After the create the record is marked `started`.
    pub async fn handle_with(&self, req: &WebhookRequest, peers: Peers<'_>) -> Response {
        let fail = |what: &str, error: &dyn std::fmt::Display| {
            let correlation_id = uuid::Uuid::new_v4().to_string();
            tracing::error!(%correlation_id, error = %error, "{what}");
            Response::internal_error(&correlation_id)
        };
        let verified = match self.verify(req) {
            Ok(v) => v,
            Err(rejection) => {
                tracing::warn!(status = rejection.status(), error = %rejection, "delivery rejected");
                return Response::rejected(&rejection);
            }
        };
        let (prepared, concurrency) = match verified {
            Verified::Done(prepared) => (prepared, self.offline.triggers.concurrency),
            Verified::Push { delivery, push } => match self.decider(peers.triggers).await {
                Ok(decider) => (self.decide(&decider, delivery, &push), decider.triggers.concurrency),
                Err(error) => return fail("could not read the trigger settings", &error),
            },
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
                let mut entry = self.ledger_entry(&delivery, &workflow);
                match peers.ledger.claim(&entry).await {
                    Err(error) => return fail("could not claim the delivery in the ledger", &error),
                    Ok(Claim::Exists(found)) if found.state == EntryState::Started => {
                        tracing::info!(%delivery, workflow = %found.workflow, since = %found.updated_at, "delivery already started (ledger)");
                        return self.already_started(&found.workflow);
                    }
                    Ok(Claim::Exists(found)) => {
                        tracing::info!(%delivery, since = %found.updated_at, "delivery pending in the ledger: creating its Workflow (409 if it exists)");
                    }
                    Ok(Claim::New) => {}
                }
                match self.start(&target, &workflow, concurrency, peers.submitter).await {
                    Ok(response) => {
                        entry.state = EntryState::Started;
                        entry.updated_at = now_rfc3339();
                        if let Err(error) = peers.ledger.record(&entry).await {
                            // The Workflow exists: a retry finds `pending` and gets the 409.
                            tracing::warn!(%delivery, error = %error, "could not mark the delivery started in the ledger");
                        }
                        tracing::info!(%delivery, workflow = %workflow.metadata.name, status = response.status, "delivery handled");
                        response
                    }
                    Err(error) => fail("could not start the workflow", &error),
                }
            }
        }
    }

    fn ledger_entry(&self, delivery: &str, workflow: &Workflow) -> Entry {
        Entry {
            delivery: delivery.to_owned(),
            state: EntryState::Pending,
            workflow: workflow.metadata.name.clone(),
            namespace: self.run.namespace.clone(),
            template: self.run.template.clone(),
            commit: workflow.argument("commit-sha").unwrap_or_default().to_owned(),
            updated_at: now_rfc3339(),
        }
    }

    fn already_started(&self, name: &str) -> Response {
        Response::new(
            200,
            json!({"status": "already started", "workflow": name, "namespace": self.run.namespace, "url": self.link(name)}),
        )
    }

    async fn start(
        &self,
        target: &Target,
        workflow: &Workflow,
        concurrency: Concurrency,
        submitter: &dyn WorkflowSubmitter,
    ) -> Result<Response, SubmitError> {
        let name = &workflow.metadata.name;
        let namespace = &self.run.namespace;
        let already = || self.already_started(name);
        let mut superseded = Vec::new();
        if concurrency == Concurrency::Supersede {
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

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests;
