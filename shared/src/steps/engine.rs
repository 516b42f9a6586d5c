//! The deploy engine (`aphex::deploy`) as the steps' [`EnvironmentDeployer`], with the time spent
//! waiting on AWS measured at the AWS calls themselves and live per-stack progress.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{
    DeployOutcome, DeployRequest, EnvironmentDeployer, OutputSink, StackRecord, StackUpdate, Status,
};
use crate::deploy::{
    self, AssetStore, ChangeSetInfo, ChangeSetKind, Cloud, CloudError, DeployOptions, DeployedStack, Method,
    SdkCloud, StackDeployer, StackEvent, StackInput, StackOutcome, UpdateStarted,
};

/// Deploys through `aphex::deploy::deploy_environment`: synth just in time in the work tree, then the
/// environment's stacks through CloudFormation.
#[derive(Debug, Clone, Default)]
pub struct EngineDeployer {
    /// Change sets (default) or CreateStack/UpdateStack (`direct`, needed for moto, whose change sets
    /// produce no outputs).
    pub method: Method,
    /// Engine progress lines on stderr (pods); the local runner shows its own per-stack lines.
    pub progress: bool,
}

impl EngineDeployer {
    /// The method named by `APHEX_DEPLOY_METHOD` (`change-set` or `direct`), change sets otherwise.
    pub fn method_from_env() -> Result<Method, String> {
        match std::env::var("APHEX_DEPLOY_METHOD").ok().as_deref() {
            None | Some("") | Some("change-set") => Ok(Method::ChangeSet),
            Some("direct") => Ok(Method::Direct),
            Some(other) => Err(format!("APHEX_DEPLOY_METHOD={other:?}: use change-set or direct")),
        }
    }
}

fn action(outcome: &StackOutcome) -> (Status, &'static str, Option<String>) {
    match outcome {
        StackOutcome::Deployed => (Status::Succeeded, "deployed", None),
        StackOutcome::Unchanged => (Status::Succeeded, "unchanged", None),
        StackOutcome::NoChanges => (Status::Succeeded, "no changes", None),
        StackOutcome::Planned { .. } => (Status::Succeeded, "planned", None),
        StackOutcome::Failed { message, .. } => (Status::Failed, "failed", Some(message.clone())),
        StackOutcome::NotStarted { reason } => (Status::Skipped, "not started", Some(reason.clone())),
    }
}

#[async_trait]
impl EnvironmentDeployer for EngineDeployer {
    async fn deploy(&self, request: DeployRequest<'_>, sink: Arc<dyn OutputSink>) -> DeployOutcome {
        let options = DeployOptions {
            method: self.method,
            run_id: request.run_id.to_owned(),
            progress: self.progress,
            ..Default::default()
        };
        let env = request.env;
        // `deploy::deploy_environment` with the SDK adapter wrapped to time every AWS call and report
        // stack progress.
        let (plan, synth) = match deploy::prepare(request.config, env, &options, request.work_dir).await {
            Ok(prepared) => prepared,
            Err(err) => return DeployOutcome { error: Some(err.to_string()), ..Default::default() },
        };
        let mut outcome = DeployOutcome { synth: synth.unwrap_or_default(), ..Default::default() };
        let watch = Arc::new(Watch {
            stage: request.stage.to_owned(),
            sink: sink.clone(),
            names: plan.iter().map(|p| (p.stack.stack_name.clone(), p.stack.display_name.clone())).collect(),
            state: Mutex::default(),
        });
        let cloud =
            Arc::new(WatchedCloud { inner: Arc::new(SdkCloud::new(request.run_id)), watch: watch.clone() });
        let report = deploy::deploy_plan(cloud, env, plan, &options).await;
        let ms = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        let mut polled = Duration::ZERO;
        for stack in &report.stacks {
            let (status, verb, error) = action(&stack.outcome);
            sink.line(
                request.stage,
                &format!("{} {verb} in {:.2}s", stack.display_name, stack.duration_ms as f64 / 1000.0),
            );
            polled += Duration::from_millis(ms(stack.aws_wait_ms));
            outcome.stacks.push(StackRecord {
                name: stack.display_name.clone(),
                status,
                duration_ms: ms(stack.duration_ms),
                aws_wait_ms: ms(stack.aws_wait_ms),
                action: Some(verb.to_owned()),
                error,
            });
        }
        outcome.outputs = report
            .outputs
            .iter()
            .map(|(stack, values)| {
                (stack.clone(), values.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            })
            .collect();
        outcome.aws_wait = aws_wait(watch.in_flight(), polled, Duration::from_millis(ms(report.duration_ms)));
        if !report.success() {
            outcome.error = Some(report.failures().join("; "));
        }
        outcome
    }
}

/// The deploy's time waiting on AWS: the wall time with at least one AWS request in flight, or the
/// engine's own polling total when that is larger (its sleeps between polls are waiting too), never
/// more than the deploy took. Both are lower bounds of the true union, so the remainder, counted as
/// aphex's overhead, is never understated.
pub fn aws_wait(in_flight: Duration, polled: Duration, wall: Duration) -> Duration {
    in_flight.max(polled.min(wall)).min(wall)
}

/// What the deploy's AWS calls tell about its stacks, and how long they were outstanding.
struct Watch {
    stage: String,
    sink: Arc<dyn OutputSink>,
    /// CloudFormation stack name -> display name.
    names: HashMap<String, String>,
    state: Mutex<WatchState>,
}

#[derive(Default)]
struct WatchState {
    /// Requests in flight now, and since when the count is above zero.
    outstanding: usize,
    busy_since: Option<Instant>,
    in_flight: Duration,
    /// Stacks started, with their start.
    started: HashMap<String, Instant>,
    /// Final statuses described and not reported yet: reported after that poll's events.
    finishing: HashMap<String, StackUpdate>,
    /// When each stack's latest events answer arrived: the engine may read status and events
    /// concurrently, so the events of a poll can arrive before its describe.
    events_seen_at: HashMap<String, Instant>,
    done: HashSet<String>,
    seen_events: HashSet<String>,
}

impl Watch {
    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a request in flight until the guard drops.
    fn call(self: &Arc<Self>) -> InFlight {
        let mut state = self.lock();
        if state.outstanding == 0 {
            state.busy_since = Some(Instant::now());
        }
        state.outstanding += 1;
        InFlight(self.clone())
    }

    fn in_flight(&self) -> Duration {
        let state = self.lock();
        state.in_flight
            + state.busy_since.filter(|_| state.outstanding > 0).map_or(Duration::ZERO, |s| s.elapsed())
    }

    fn display(&self, stack_name: &str) -> String {
        self.names.get(stack_name).cloned().unwrap_or_else(|| stack_name.to_owned())
    }

    fn started(&self, stack_name: &str) {
        self.lock().started.insert(stack_name.to_owned(), Instant::now());
        self.sink.stack(&self.stage, &self.display(stack_name), &StackUpdate::Started);
    }

    /// New events of a started stack, oldest first (CloudFormation lists them newest first), then its
    /// final status when the describe before them found one.
    fn events(&self, stack_name: &str, events: &[StackEvent]) {
        let (fresh, done): (Vec<&StackEvent>, Option<StackUpdate>) = {
            let mut state = self.lock();
            let Some(since) = state.started.get(stack_name).copied() else { return };
            // Events of earlier operations on the stack are not this deploy's.
            let started_ms = since_epoch_ms(since).saturating_sub(1000);
            let fresh = events
                .iter()
                .rev()
                .filter(|e| e.timestamp_ms >= started_ms)
                .filter(|e| state.seen_events.insert(e.event_id.clone()))
                .collect();
            state.events_seen_at.insert(stack_name.to_owned(), Instant::now());
            let done = state.finishing.remove(stack_name);
            if done.is_some() {
                state.done.insert(stack_name.to_owned());
            }
            (fresh, done)
        };
        let display = self.display(stack_name);
        for e in fresh {
            let update = StackUpdate::Event {
                logical_id: e.logical_id.clone(),
                resource_type: e.resource_type.clone(),
                status: e.status.clone(),
                reason: e.reason.clone(),
            };
            self.sink.stack(&self.stage, &display, &update);
        }
        if let Some(done) = done {
            self.sink.stack(&self.stage, &display, &done);
        }
    }

    /// A describe of a started stack, asked at `asked`, that shows a final status ends its progress:
    /// at once when events read since `asked` were already shown, else after the next events.
    fn described(&self, stack_name: &str, stack: Option<&DeployedStack>, asked: Instant) {
        let Some(stack) = stack.filter(|s| !s.status.ends_with("_IN_PROGRESS")) else { return };
        let mut state = self.lock();
        if state.done.contains(stack_name) {
            return;
        }
        let Some(since) = state.started.get(stack_name) else { return };
        let update = StackUpdate::Done {
            status: stack.status.clone(),
            elapsed_ms: u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        if state.events_seen_at.get(stack_name).is_some_and(|at| *at >= asked) {
            state.done.insert(stack_name.to_owned());
            drop(state);
            self.sink.stack(&self.stage, &self.display(stack_name), &update);
        } else {
            state.finishing.insert(stack_name.to_owned(), update);
        }
    }
}

/// Milliseconds since the epoch of an `Instant` in the past (event timestamps are wall-clock).
fn since_epoch_ms(at: Instant) -> i64 {
    let now = time::OffsetDateTime::now_utc();
    let then = now - at.elapsed();
    i64::try_from(then.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.outstanding = state.outstanding.saturating_sub(1);
        if state.outstanding == 0
            && let Some(since) = state.busy_since.take()
        {
            state.in_flight += since.elapsed();
        }
    }
}

/// [`Cloud`] with every call timed and the stack deployers watched.
struct WatchedCloud {
    inner: Arc<dyn Cloud>,
    watch: Arc<Watch>,
}

#[async_trait]
impl Cloud for WatchedCloud {
    async fn deployer(&self, role: Option<&str>, region: &str) -> Result<Arc<dyn StackDeployer>, CloudError> {
        let _t = self.watch.call();
        let inner = self.inner.deployer(role, region).await?;
        Ok(Arc::new(WatchedDeployer { inner, watch: self.watch.clone() }))
    }

    async fn asset_store(&self, role: Option<&str>, region: &str) -> Result<Arc<dyn AssetStore>, CloudError> {
        let _t = self.watch.call();
        let inner = self.inner.asset_store(role, region).await?;
        Ok(Arc::new(WatchedAssets { inner, watch: self.watch.clone() }))
    }

    async fn ssm_parameter(
        &self,
        role: Option<&str>,
        region: &str,
        name: &str,
    ) -> Result<Option<String>, CloudError> {
        let _t = self.watch.call();
        self.inner.ssm_parameter(role, region, name).await
    }

    async fn secret_value(
        &self,
        role: Option<&str>,
        region: &str,
        id: &str,
    ) -> Result<Option<String>, CloudError> {
        let _t = self.watch.call();
        self.inner.secret_value(role, region, id).await
    }

    fn template_url(&self, bucket: &str, key: &str, region: &str) -> String {
        self.inner.template_url(bucket, key, region)
    }
}

struct WatchedAssets {
    inner: Arc<dyn AssetStore>,
    watch: Arc<Watch>,
}

#[async_trait]
impl AssetStore for WatchedAssets {
    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, CloudError> {
        let _t = self.watch.call();
        self.inner.exists(bucket, key).await
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), CloudError> {
        let _t = self.watch.call();
        self.inner.put(bucket, key, body).await
    }
}

struct WatchedDeployer {
    inner: Arc<dyn StackDeployer>,
    watch: Arc<Watch>,
}

#[async_trait]
impl StackDeployer for WatchedDeployer {
    async fn describe_stack(&self, name: &str) -> Result<Option<DeployedStack>, CloudError> {
        let asked = Instant::now();
        let described = {
            let _t = self.watch.call();
            self.inner.describe_stack(name).await
        };
        if let Ok(stack) = &described {
            self.watch.described(name, stack.as_ref(), asked);
        }
        described
    }

    async fn template_body(&self, name: &str) -> Result<String, CloudError> {
        let _t = self.watch.call();
        self.inner.template_body(name).await
    }

    async fn create_stack(&self, input: &StackInput) -> Result<(), CloudError> {
        self.watch.started(&input.stack_name);
        let _t = self.watch.call();
        self.inner.create_stack(input).await
    }

    async fn update_stack(&self, input: &StackInput) -> Result<UpdateStarted, CloudError> {
        self.watch.started(&input.stack_name);
        let _t = self.watch.call();
        self.inner.update_stack(input).await
    }

    async fn delete_stack(&self, name: &str) -> Result<(), CloudError> {
        let _t = self.watch.call();
        self.inner.delete_stack(name).await
    }

    async fn create_change_set(
        &self,
        input: &StackInput,
        change_set_name: &str,
        kind: ChangeSetKind,
    ) -> Result<String, CloudError> {
        self.watch.started(&input.stack_name);
        let _t = self.watch.call();
        self.inner.create_change_set(input, change_set_name, kind).await
    }

    async fn describe_change_set(&self, arn: &str) -> Result<ChangeSetInfo, CloudError> {
        let _t = self.watch.call();
        self.inner.describe_change_set(arn).await
    }

    async fn execute_change_set(&self, arn: &str) -> Result<(), CloudError> {
        let _t = self.watch.call();
        self.inner.execute_change_set(arn).await
    }

    async fn delete_change_set(&self, arn: &str) -> Result<(), CloudError> {
        let _t = self.watch.call();
        self.inner.delete_change_set(arn).await
    }

    async fn stack_events(&self, name: &str, since_ms: i64) -> Result<Vec<StackEvent>, CloudError> {
        let events = {
            let _t = self.watch.call();
            self.inner.stack_events(name, since_ms).await
        };
        if let Ok(list) = &events {
            self.watch.events(name, list);
        }
        events
    }

    async fn newest_event(&self, name: &str) -> Result<Option<StackEvent>, CloudError> {
        let _t = self.watch.call();
        self.inner.newest_event(name).await
    }

    async fn set_termination_protection(&self, name: &str, enabled: bool) -> Result<(), CloudError> {
        let _t = self.watch.call();
        self.inner.set_termination_protection(name, enabled).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::shell::MemorySink;

    /// CloudFormation as it answers a create whose queue fails: the stack rolls back, and the events
    /// (newest first) name the resource, its type and the reason. Every call takes `latency`.
    struct RollingBack {
        latency: Duration,
        events: Vec<StackEvent>,
    }

    fn event(id: &str, logical: &str, kind: &str, status: &str, reason: Option<&str>, at: i64) -> StackEvent {
        StackEvent {
            event_id: id.into(),
            logical_id: logical.into(),
            resource_type: kind.into(),
            status: status.into(),
            reason: reason.map(str::to_owned),
            timestamp_ms: at,
        }
    }

    fn unused(operation: &'static str) -> CloudError {
        CloudError::new(operation, "not used by this test")
    }

    #[async_trait]
    impl StackDeployer for RollingBack {
        async fn describe_stack(&self, _name: &str) -> Result<Option<DeployedStack>, CloudError> {
            tokio::time::sleep(self.latency).await;
            Ok(Some(DeployedStack { status: "ROLLBACK_COMPLETE".into(), ..Default::default() }))
        }
        async fn template_body(&self, _name: &str) -> Result<String, CloudError> {
            Err(unused("GetTemplate"))
        }
        async fn create_stack(&self, _input: &StackInput) -> Result<(), CloudError> {
            tokio::time::sleep(self.latency).await;
            Ok(())
        }
        async fn update_stack(&self, _input: &StackInput) -> Result<UpdateStarted, CloudError> {
            Err(unused("UpdateStack"))
        }
        async fn delete_stack(&self, _name: &str) -> Result<(), CloudError> {
            Err(unused("DeleteStack"))
        }
        async fn create_change_set(
            &self,
            _input: &StackInput,
            _name: &str,
            _kind: ChangeSetKind,
        ) -> Result<String, CloudError> {
            Err(unused("CreateChangeSet"))
        }
        async fn describe_change_set(&self, _arn: &str) -> Result<ChangeSetInfo, CloudError> {
            Err(unused("DescribeChangeSet"))
        }
        async fn execute_change_set(&self, _arn: &str) -> Result<(), CloudError> {
            Err(unused("ExecuteChangeSet"))
        }
        async fn delete_change_set(&self, _arn: &str) -> Result<(), CloudError> {
            Err(unused("DeleteChangeSet"))
        }
        async fn stack_events(&self, _name: &str, since_ms: i64) -> Result<Vec<StackEvent>, CloudError> {
            tokio::time::sleep(self.latency).await;
            Ok(self.events.iter().filter(|e| e.timestamp_ms >= since_ms).cloned().collect())
        }
        async fn set_termination_protection(&self, _name: &str, _on: bool) -> Result<(), CloudError> {
            Err(unused("UpdateTerminationProtection"))
        }
    }

    /// A watch of stage deploy-dev, where the stack `dev-Broken` shows as `Broken`, and what it prints.
    fn watched_deploy_dev() -> (Arc<MemorySink>, Arc<Watch>) {
        let sink = Arc::new(MemorySink::default());
        let watch = Arc::new(Watch {
            stage: "deploy-dev".into(),
            sink: sink.clone(),
            names: [("dev-Broken".to_owned(), "Broken".to_owned())].into_iter().collect(),
            state: Mutex::default(),
        });
        (sink, watch)
    }

    #[tokio::test]
    async fn stack_progress_shows_each_new_event_once_then_the_final_status_and_times_every_call() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000;
        let events = vec![
            event("4", "Broken", "AWS::CloudFormation::Stack", "ROLLBACK_COMPLETE", None, now + 3),
            event(
                "3",
                "Jobs",
                "AWS::SQS::Queue",
                "CREATE_FAILED",
                Some("Queue name must end in .fifo"),
                now + 2,
            ),
            event("2", "Broken", "AWS::CloudFormation::Stack", "CREATE_IN_PROGRESS", None, now + 1),
            // An event of an earlier operation on the stack is not this deploy's.
            event("1", "Broken", "AWS::CloudFormation::Stack", "DELETE_COMPLETE", None, now - 60_000),
        ];
        let (sink, watch) = watched_deploy_dev();
        let latency = Duration::from_millis(20);
        let cf = WatchedDeployer { inner: Arc::new(RollingBack { latency, events }), watch: watch.clone() };
        // Before a create, a describe (the engine's up-front check) reports nothing.
        cf.describe_stack("dev-Broken").await.unwrap();
        cf.create_stack(&StackInput { stack_name: "dev-Broken".into(), ..Default::default() }).await.unwrap();
        for _ in 0..2 {
            cf.describe_stack("dev-Broken").await.unwrap();
            // From the start of time: the watch itself must leave out the earlier operation's events.
            cf.stack_events("dev-Broken", 0).await.unwrap();
        }
        let lines: Vec<String> = sink.lines.lock().unwrap().clone();
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert_eq!(lines[0], "[deploy-dev] Broken: started");
        assert_eq!(lines[1], "[deploy-dev] Broken: Broken AWS::CloudFormation::Stack CREATE_IN_PROGRESS");
        assert_eq!(
            lines[2],
            "[deploy-dev] Broken: Jobs AWS::SQS::Queue CREATE_FAILED (Queue name must end in .fifo)"
        );
        assert_eq!(lines[3], "[deploy-dev] Broken: Broken AWS::CloudFormation::Stack ROLLBACK_COMPLETE");
        assert!(lines[4].starts_with("[deploy-dev] Broken: ROLLBACK_COMPLETE in "), "{}", lines[4]);
        // Six sequential calls of 20 ms each were in flight.
        assert!(watch.in_flight() >= latency * 6, "{:?}", watch.in_flight());
    }

    #[tokio::test]
    async fn a_poll_reading_status_and_events_together_ends_with_the_final_status_once() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000;
        let events = vec![
            event("2", "Broken", "AWS::CloudFormation::Stack", "ROLLBACK_COMPLETE", None, now + 2),
            event("1", "Broken", "AWS::CloudFormation::Stack", "CREATE_IN_PROGRESS", None, now + 1),
        ];
        // Either answer may come first: events slower than the describe, then faster.
        for (describe_ms, events_ms) in [(5, 40), (40, 5)] {
            let (sink, watch) = watched_deploy_dev();
            let status = WatchedDeployer {
                inner: Arc::new(RollingBack {
                    latency: Duration::from_millis(describe_ms),
                    events: events.clone(),
                }),
                watch: watch.clone(),
            };
            let history = WatchedDeployer {
                inner: Arc::new(RollingBack {
                    latency: Duration::from_millis(events_ms),
                    events: events.clone(),
                }),
                watch: watch.clone(),
            };
            status
                .create_stack(&StackInput { stack_name: "dev-Broken".into(), ..Default::default() })
                .await
                .unwrap();
            let (described, listed) =
                tokio::join!(status.describe_stack("dev-Broken"), history.stack_events("dev-Broken", 0));
            described.unwrap();
            listed.unwrap();
            let lines: Vec<String> = sink.lines.lock().unwrap().clone();
            assert_eq!(lines.len(), 4, "{describe_ms}/{events_ms}: {lines:#?}");
            assert_eq!(lines[2], "[deploy-dev] Broken: Broken AWS::CloudFormation::Stack ROLLBACK_COMPLETE");
            assert!(lines[3].starts_with("[deploy-dev] Broken: ROLLBACK_COMPLETE in "), "{}", lines[3]);
        }
    }

    #[test]
    fn aws_wait_is_the_larger_lower_bound_and_never_more_than_the_deploy() {
        let s = Duration::from_secs;
        assert_eq!(aws_wait(s(3), s(2), s(10)), s(3));
        assert_eq!(aws_wait(s(1), s(4), s(10)), s(4));
        // Parallel stacks poll at the same time: their sum is capped by the wall time.
        assert_eq!(aws_wait(s(1), s(25), s(10)), s(10));
        assert_eq!(aws_wait(s(12), s(0), s(10)), s(10));
    }
}
