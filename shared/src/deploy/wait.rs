//! Waiting on CloudFormation: change sets, deletions and stack operations polled with a growing
//! interval, stack events streamed as progress lines, and the failure named from those events.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::*;

/// One wait's clock: when it started, its deadline, and when it last said it is still waiting.
pub(super) struct Clock {
    started: Instant,
    limit: Duration,
    heartbeat: Duration,
    last_said: Instant,
}

impl Clock {
    pub(super) fn start(ctx: &Ctx) -> Clock {
        let now = Instant::now();
        Clock { started: now, limit: ctx.wait_limit(), heartbeat: ctx.options.heartbeat, last_said: now }
    }

    fn expired(&self) -> bool {
        self.started.elapsed() >= self.limit
    }

    /// True (once per heartbeat) when it is time to say the wait goes on.
    fn due(&mut self) -> bool {
        if self.last_said.elapsed() >= self.heartbeat {
            self.last_said = Instant::now();
            true
        } else {
            false
        }
    }

    /// Something was shown (a new event): the next heartbeat counts from now.
    fn shown(&mut self) {
        self.last_said = Instant::now();
    }
}

/// `1h02m03s`, `4m05s`, `6.2s`.
pub fn elapsed_text(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m{:02}s", secs / 3600, secs % 3600 / 60, secs % 60),
    }
}

/// An event as a progress line shows it: `Fn AWS::Lambda::Function CREATE_IN_PROGRESS (reason)`.
pub fn event_text(e: &StackEvent) -> String {
    format!(
        "{} {} {}{}",
        e.logical_id,
        e.resource_type,
        e.status,
        e.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
    )
}

/// The failure of a wait past its deadline: the stack, its status, the newest event, what to do.
pub fn timeout_message(
    stack: &str,
    what: &str,
    status: &str,
    newest: Option<&StackEvent>,
    waited: Duration,
) -> String {
    let newest = newest.map(event_text).unwrap_or_else(|| "none".to_owned());
    format!(
        "stack {stack}: gave up waiting for {what} after {} (the deadline: environments[].deployTimeoutMinutes, or aphex deploy --timeout); it is still {status}; newest event: {newest}. CloudFormation goes on without aphex: follow it with `aws cloudformation describe-stack-events --stack-name {stack}`; if it is stuck (often a custom resource that never answers), stop it (`aws cloudformation cancel-update-stack --stack-name {stack}` for an update) or let CloudFormation's own timeout end it, then deploy again",
        elapsed_text(waited)
    )
}

/// Adaptive polling: starts at `poll_min`, grows by half each time, capped at `poll_max`.
pub(super) fn next_delay(current: Duration, max: Duration) -> Duration {
    (current + current / 2).min(max)
}

pub(super) async fn wait_change_set(
    ctx: &Ctx,
    cf: &dyn StackDeployer,
    stack: &Stack,
    arn: &str,
    waited: &mut Duration,
) -> Result<ChangeSetInfo, StackFailure> {
    let mut delay = ctx.options.poll_min;
    let mut clock = Clock::start(ctx);
    loop {
        let t = Instant::now();
        let info = cf.describe_change_set(arn).await?;
        *waited += t.elapsed();
        if info.status == "CREATE_COMPLETE" || info.status == "FAILED" {
            return Ok(info);
        }
        if clock.expired() {
            return Err(fail(timeout_message(
                &stack.display_name,
                &format!("change set {arn}"),
                &info.status,
                None,
                clock.started.elapsed(),
            )));
        }
        if clock.due() {
            let e = elapsed_text(clock.started.elapsed());
            progress(ctx, stack, &format!("change set still {} after {e}", info.status));
        }
        tokio::time::sleep(delay).await;
        *waited += delay;
        delay = next_delay(delay, ctx.options.poll_max);
    }
}

pub(super) async fn wait_deleted(
    ctx: &Ctx,
    cf: &dyn StackDeployer,
    stack: &Stack,
    stack_id: &str,
    waited: &mut Duration,
) -> Result<(), StackFailure> {
    let mut delay = ctx.options.poll_min;
    let mut clock = Clock::start(ctx);
    loop {
        let t = Instant::now();
        let d = cf.describe_stack(stack_id).await?;
        *waited += t.elapsed();
        match d {
            None => return Ok(()),
            Some(d) if d.status == "DELETE_FAILED" => {
                return Err(fail(format!(
                    "deleting stack {stack_id} failed: {}",
                    d.status_reason.unwrap_or_default()
                )));
            }
            Some(d) => {
                if clock.expired() {
                    let newest = cf.newest_event(stack_id).await.unwrap_or_default();
                    return Err(fail(timeout_message(
                        &stack.display_name,
                        "its deletion",
                        &d.status,
                        newest.as_ref(),
                        clock.started.elapsed(),
                    )));
                }
                if clock.due() {
                    let newest = cf.newest_event(stack_id).await.unwrap_or_default();
                    say_still(ctx, stack, &d.status, &clock, newest.as_ref());
                }
            }
        }
        tokio::time::sleep(delay).await;
        *waited += delay;
        delay = next_delay(delay, ctx.options.poll_max);
    }
}

/// Waits until the stack leaves `*_IN_PROGRESS`, streaming events newer than `since_ms`. Returns the
/// final description, or a failure naming the first failed resource and what rolled back.
pub(super) async fn wait_stack(
    ctx: &Ctx,
    cf: &dyn StackDeployer,
    stack: &Stack,
    since_ms: Option<i64>,
    waited: &mut Duration,
) -> Result<(DeployedStack, Vec<StackEvent>), StackFailure> {
    let mut delay = ctx.options.poll_min;
    let mut seen: HashSet<String> = HashSet::new();
    let mut events: Vec<StackEvent> = Vec::new(); // oldest first
    // Events of earlier operations are not ours: without `since`, take the current ones as seen.
    let since = since_ms.unwrap_or_else(now_ms).saturating_sub(1000);
    let mut clock = Clock::start(ctx);
    loop {
        let t = Instant::now();
        // Both at once: a poll costs one round trip.
        let (d, fresh) =
            tokio::join!(cf.describe_stack(&stack.stack_name), cf.stack_events(&stack.stack_name, since));
        let d = d?;
        *waited += t.elapsed();
        let before = events.len();
        record_events(ctx, stack, fresh.unwrap_or_default(), &mut seen, &mut events);
        if events.len() > before {
            clock.shown();
        }
        let Some(d) = d else {
            return Err(fail(format!("stack {} disappeared while deploying", stack.display_name)));
        };
        if !d.status.ends_with("_IN_PROGRESS") {
            if matches!(d.status.as_str(), "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "IMPORT_COMPLETE") {
                return Ok((d, events));
            }
            // The events were read alongside the status, so the failure that led to it may have come
            // just after them: read them once more before naming the failed resource.
            let more = cf.stack_events(&stack.stack_name, since).await.unwrap_or_default();
            record_events(ctx, stack, more, &mut seen, &mut events);
            return Err(stack_failure(stack, &d, &events));
        }
        let expired = clock.expired();
        if expired || clock.due() {
            // The newest event is ours when we saw one; before our operation, it is the running one's.
            let newest = match events.last() {
                Some(e) => Some(e.clone()),
                None => cf.newest_event(&stack.stack_name).await.unwrap_or_default(),
            };
            if expired {
                let what = if since_ms.is_some() { "its deploy" } else { "the operation already running" };
                return Err(StackFailure {
                    final_status: Some(d.status.clone()),
                    ..fail(timeout_message(
                        &stack.display_name,
                        what,
                        &d.status,
                        newest.as_ref(),
                        clock.started.elapsed(),
                    ))
                });
            }
            say_still(ctx, stack, &d.status, &clock, newest.as_ref());
        }
        tokio::time::sleep(delay).await;
        *waited += delay;
        delay = next_delay(delay, ctx.options.poll_max);
    }
}

/// The heartbeat of a wait: status, time waited, newest event.
fn say_still(ctx: &Ctx, stack: &Stack, status: &str, clock: &Clock, newest: Option<&StackEvent>) {
    let newest = newest.map(event_text).unwrap_or_else(|| "none yet".to_owned());
    progress(
        ctx,
        stack,
        &format!("still {status} after {}; newest event: {newest}", elapsed_text(clock.started.elapsed())),
    );
}

/// Adds the events not seen yet (`fresh` is newest first) to `events` (oldest first), printing each.
pub(super) fn record_events(
    ctx: &Ctx,
    stack: &Stack,
    fresh: Vec<StackEvent>,
    seen: &mut HashSet<String>,
    events: &mut Vec<StackEvent>,
) {
    for e in fresh.into_iter().rev() {
        if seen.insert(e.event_id.clone()) {
            progress(ctx, stack, &event_text(&e));
            events.push(e);
        }
    }
}

pub(super) fn stack_failure(stack: &Stack, d: &DeployedStack, events: &[StackEvent]) -> StackFailure {
    // The first failed resource other than the stack itself, else the stack's own failure event.
    let failed: Vec<&StackEvent> = events.iter().filter(|e| e.status.ends_with("_FAILED")).collect();
    let first = failed
        .iter()
        .find(|e| e.resource_type != "AWS::CloudFormation::Stack" || e.logical_id != stack.stack_name)
        .or_else(|| failed.first())
        .copied();
    let resource = first.map(|e| {
        Box::new(FailedResource {
            logical_id: e.logical_id.clone(),
            resource_type: e.resource_type.clone(),
            status: e.status.clone(),
            reason: e.reason.clone().unwrap_or_default(),
        })
    });
    let rolled_back = if d.status.contains("ROLLBACK") {
        let mut undone: Vec<String> = events
            .iter()
            .filter(|e| {
                e.logical_id != stack.stack_name
                    && (e.status == "DELETE_COMPLETE" || e.status == "UPDATE_COMPLETE")
                    && events
                        .iter()
                        .any(|f| f.status.contains("ROLLBACK") && f.timestamp_ms <= e.timestamp_ms)
            })
            .map(|e| e.logical_id.clone())
            .collect();
        undone.dedup();
        if undone.is_empty() {
            format!("; the stack rolled back ({})", d.status)
        } else {
            format!("; the stack rolled back ({}), undoing {}", d.status, undone.join(", "))
        }
    } else {
        format!("; final status {}", d.status)
    };
    let what = match &resource {
        Some(r) => format!("resource {} ({}) {}: {}", r.logical_id, r.resource_type, r.status, r.reason),
        None => d.status_reason.clone().unwrap_or_else(|| d.status.clone()),
    };
    StackFailure {
        message: format!("stack {} failed: {what}{rolled_back}", stack.display_name),
        resource,
        final_status: Some(d.status.clone()),
    }
}
