//! One stack's deploy: where and as whom it goes, the bootstrap check, asset publishing, the
//! up-front unchanged check, and the CloudFormation calls (change set or direct).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::settings::STABLE_OK;
use super::*;
/// A failure inside one stack's deploy (boxed parts keep `Result`s small).
pub(crate) struct StackFailure {
    pub(crate) message: String,
    pub(super) resource: Option<Box<FailedResource>>,
    pub(super) final_status: Option<String>,
}

impl From<CloudError> for StackFailure {
    fn from(e: CloudError) -> Self {
        StackFailure { message: e.to_string(), resource: None, final_status: None }
    }
}

pub(super) fn fail(message: impl Into<String>) -> StackFailure {
    StackFailure { message: message.into(), resource: None, final_status: None }
}

/// Where and as whom one stack deploys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) account: String,
    pub(crate) region: String,
    pub(crate) deploy_role: Option<String>,
    pub(crate) exec_role: Option<String>,
}

pub(crate) fn resolve_target(env: &Environment, stack: &Stack) -> Result<Target, StackFailure> {
    let (acct, region) = assembly::parse_environment(&stack.environment).ok_or_else(|| {
        fail(format!("stack {} has an invalid environment {:?}", stack.display_name, stack.environment))
    })?;
    let account = if acct == "unknown-account" { env.account.as_str() } else { acct };
    let region = if region == "unknown-region" { env.region.as_str() } else { region };
    if account != env.account || region != env.region {
        return Err(fail(format!(
            "stack {} is bound to aws://{account}/{region} but environment {} is {}; make the app take its account and region from CDK_DEFAULT_ACCOUNT/CDK_DEFAULT_REGION or select the stack in the matching environment",
            stack.display_name,
            env.name,
            env.cdk_environment()
        )));
    }
    let sub = |s: &Option<String>| s.as_ref().map(|s| assembly::substitute(s, account, region));
    // The environment's custom role replaces the bootstrap roles (and its own permissions apply).
    let (deploy_role, exec_role) = match &env.role {
        Some(role) => (Some(role.clone()), None),
        None => (
            sub(&stack.properties.assume_role_arn),
            sub(&stack.properties.cloud_formation_execution_role_arn),
        ),
    };
    Ok(Target { account: account.to_owned(), region: region.to_owned(), deploy_role, exec_role })
}

pub(super) fn progress(ctx: &Ctx, stack: &Stack, message: &str) {
    if ctx.options.progress {
        eprintln!(
            "[{} {:>6.1}s] {}: {message}",
            ctx.env.name,
            ctx.started.elapsed().as_secs_f64(),
            stack.display_name
        );
    }
}

pub(super) async fn deploy_stack(ctx: &Ctx, stack: &Stack, seen: Option<Seen>) -> StackReport {
    let started = Instant::now();
    let mut waited = Duration::ZERO;
    progress(ctx, stack, "starting");
    let seen = seen.filter(|s| s.at.elapsed() < SEEN_FRESH_FOR);
    let result = deploy_stack_inner(ctx, stack, seen, &mut waited).await;
    let elapsed = started.elapsed();
    match result {
        Ok((outcome, outputs)) => {
            let word = match &outcome {
                StackOutcome::Deployed => "deployed".to_owned(),
                StackOutcome::Unchanged => "unchanged (skipped)".to_owned(),
                StackOutcome::NoChanges => "no changes".to_owned(),
                StackOutcome::Planned { changes } => format!("{} change(s) planned", changes.len()),
                _ => String::new(),
            };
            progress(
                ctx,
                stack,
                &format!(
                    "{word} in {:.2}s (waiting on AWS {:.2}s)",
                    elapsed.as_secs_f64(),
                    waited.as_secs_f64()
                ),
            );
            StackReport {
                stack_name: stack.stack_name.clone(),
                display_name: stack.display_name.clone(),
                outcome,
                duration_ms: elapsed.as_millis(),
                aws_wait_ms: waited.as_millis(),
                outputs,
            }
        }
        Err(f) => {
            progress(ctx, stack, &format!("FAILED after {:.2}s", elapsed.as_secs_f64()));
            let message = if f.message.starts_with("stack ") || f.message.starts_with("aws://") {
                f.message
            } else {
                format!("stack {} failed: {}", stack.display_name, f.message)
            };
            failed_report(stack, message, f.resource.map(|r| *r), f.final_status, started, waited)
        }
    }
}

/// A stack's template, read and parsed.
pub(super) struct Template {
    pub(super) text: String,
    pub(super) json: serde_json::Value,
    pub(super) parameters: BTreeMap<String, TemplateParameter>,
}

pub(super) fn read_template(stack: &Stack) -> Result<Template, StackFailure> {
    let text = std::fs::read_to_string(&stack.template_path).map_err(|e| {
        fail(format!(
            "cannot read template {} of stack {}: {e}",
            stack.template_path.display(),
            stack.display_name
        ))
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| fail(format!("template {} is not valid JSON: {e}", stack.template_path.display())))?;
    let parameters = template_parameters(&json);
    Ok(Template { text, json, parameters })
}

/// Everything this deploy gives the stack but its template: the settings the app sets in the
/// manifest (None when it sets none: not sent, not compared), the execution role, the parameters.
pub(super) fn stack_input(ctx: &Ctx, stack: &Stack, target: &Target) -> StackInput {
    let p = &stack.properties;
    StackInput {
        stack_name: stack.stack_name.clone(),
        template_body: None,
        template_url: None,
        parameters: ctx.parameters.get(&stack.stack_name).cloned().unwrap_or_else(|| {
            p.parameters.iter().map(|(k, v)| (k.clone(), ParameterValue::plain(v))).collect()
        }),
        tags: p.tags.clone(),
        role_arn: target.exec_role.clone(),
        notification_arns: p.notification_arns.clone(),
        termination_protection: p.termination_protection,
    }
}

/// Whether the stack is deployed, stable, and has this template and every stack-level setting
/// (then its outputs are the deploy's result, with no write), with one DescribeStacks and, only when
/// everything else matches, one GetTemplate.
pub(super) async fn precheck(ctx: &Ctx, stack: &Stack) -> Result<Precheck, StackFailure> {
    let at = Instant::now();
    let changed = |deployed, compared| Ok(Precheck::Changed(Seen { deployed, compared, at }));
    if !stack.docker_assets.is_empty() {
        // Not checked: the stack's deploy refuses it with the error that names the image.
        return Err(fail("docker image assets are not supported yet"));
    }
    let target = resolve_target(&ctx.env, stack)?;
    let cf = ctx.cloud.deployer(target.deploy_role.as_deref(), &target.region).await?;
    let Some(d) = cf.describe_stack(&stack.stack_name).await? else { return changed(None, false) };
    let template = read_template(stack)?;
    let input = stack_input(ctx, stack, &target);
    if let Some(change) = settings_change(&d, &template.parameters, &input) {
        tracing::debug!(stack = %stack.display_name, %change, "needs a deploy");
        let compared = !matches!(change, Change::Status(_));
        return changed(Some(d), compared);
    }
    let body = cf.template_body(&stack.stack_name).await?;
    match template_change(&body, &template.json) {
        None => Ok(Precheck::Unchanged(d.outputs)),
        Some(_) => changed(Some(d), true),
    }
}

pub(super) async fn deploy_stack_inner(
    ctx: &Ctx,
    stack: &Stack,
    seen: Option<Seen>,
    waited: &mut Duration,
) -> Result<(StackOutcome, BTreeMap<String, String>), StackFailure> {
    if let Some(d) = stack.docker_assets.first() {
        return Err(fail(format!(
            "stack {} has a docker image asset {:?} ({}): docker image assets are not supported yet by aphex deploy; deploy this stack with the CDK CLI or move the image build out of the app",
            stack.display_name, d.display_name, d.id
        )));
    }
    let target = resolve_target(&ctx.env, stack)?;
    let cf = ctx.cloud.deployer(target.deploy_role.as_deref(), &target.region).await?;

    // Bootstrap version: the stack's own requirement and its assets'.
    for (required, param) in [
        stack
            .properties
            .requires_bootstrap_stack_version
            .zip(stack.properties.bootstrap_stack_version_ssm_parameter.clone()),
        stack.assets_bootstrap.clone(),
    ]
    .into_iter()
    .flatten()
    {
        check_bootstrap(ctx, &target, stack, required, &param).await?;
    }

    let template = read_template(stack)?;
    let template_text = &template.text;
    let mut input = stack_input(ctx, stack, &target);

    // A description the up-front check just made stands in for DescribeStacks (and its template
    // comparison for GetTemplate); a stack that starts later is described again.
    let (mut deployed, mut compared) = match seen {
        Some(seen) => (seen.deployed, seen.compared),
        None => (cf.describe_stack(&stack.stack_name).await?, false),
    };
    if let Some(d) = &deployed
        && d.status.ends_with("_IN_PROGRESS")
        && d.status != "REVIEW_IN_PROGRESS"
    {
        progress(ctx, stack, &format!("waiting for the running operation ({}) first", d.status));
        deployed = Some(wait_stack(ctx, &*cf, stack, None, waited).await?.0);
        compared = false;
    }
    if let Some(d) = &deployed
        && (d.status == "ROLLBACK_COMPLETE"
            || d.status == "ROLLBACK_FAILED"
            || d.status == "REVIEW_IN_PROGRESS")
    {
        // A stack whose creation failed (or never executed) cannot be updated: delete and create again.
        progress(ctx, stack, &format!("deleting the stack left in {} by an earlier failed create", d.status));
        if !ctx.options.dry_run {
            cf.delete_stack(&d.stack_id).await?;
            wait_deleted(ctx, &*cf, stack, &d.stack_id, waited).await?;
            deployed = None;
        }
    }

    if let Some(d) = &deployed
        && STABLE_OK.contains(&d.status.as_str())
        && !compared
    {
        let change = match settings_change(d, &template.parameters, &input) {
            Some(change) => Some(change),
            None => template_change(&cf.template_body(&stack.stack_name).await?, &template.json),
        };
        match change {
            None => return Ok((StackOutcome::Unchanged, d.outputs.clone())),
            Some(change) => tracing::debug!(stack = %stack.display_name, %change, "needs a deploy"),
        }
    }
    // Termination protection is its own call (UpdateStack and change sets do not carry it); set it
    // first, as the CDK CLI does, so it holds even when CloudFormation finds nothing else to change.
    if let (Some(d), Some(wanted)) = (&deployed, input.termination_protection)
        && d.termination_protection != wanted
        && !ctx.options.dry_run
    {
        cf.set_termination_protection(&stack.stack_name, wanted).await?;
    }

    let template_by_url = template_text.len() > MAX_TEMPLATE_BODY
        || ctx.options.method == Method::ChangeSet
            && stack.properties.stack_template_asset_object_url.is_some();
    // Every asset the assembly lists, the stack's own template included even when it goes inline:
    // `cdk deploy` publishes them all, and the bucket holds what was deployed (the parity suite,
    // tests/tests/parity_examples.rs, compares the buckets).
    publish_assets(ctx, stack, &target).await?;

    if template_by_url {
        match stack
            .properties
            .stack_template_asset_object_url
            .as_deref()
            .and_then(|u| u.strip_prefix("s3://"))
        {
            Some(loc) => {
                let loc = assembly::substitute(loc, &target.account, &target.region);
                let (bucket, key) = loc.split_once('/').unwrap_or((loc.as_str(), ""));
                input.template_url = Some(ctx.cloud.template_url(bucket, key, &target.region));
            }
            None if template_text.len() > MAX_TEMPLATE_BODY => {
                return Err(fail(format!(
                    "template of stack {} is {} bytes (over CloudFormation's {MAX_TEMPLATE_BODY}) and the assembly names no uploaded template (stackTemplateAssetObjectUrl); use the default synthesizer",
                    stack.display_name,
                    template_text.len()
                )));
            }
            None => input.template_body = Some(template_text.to_owned()),
        }
    } else {
        input.template_body = Some(template_text.to_owned());
    }

    let exists = deployed.is_some();
    if ctx.options.dry_run || ctx.options.method == Method::ChangeSet {
        let kind = if exists { ChangeSetKind::Update } else { ChangeSetKind::Create };
        let name = change_set_name(&ctx.options.run_id, &stack.stack_name);
        progress(ctx, stack, &format!("creating change set {name}"));
        let arn = cf.create_change_set(&input, &name, kind).await?;
        let info = wait_change_set(ctx, &*cf, stack, &arn, waited).await?;
        if info.status == "FAILED" {
            let reason = info.status_reason.unwrap_or_default();
            // The set is useless either way; a failed delete leaves only clutter.
            let _ = cf.delete_change_set(&arn).await;
            if cloud::is_no_changes(&reason) {
                let outputs = deployed.map(|d| d.outputs).unwrap_or_default();
                return Ok((
                    if ctx.options.dry_run {
                        StackOutcome::Planned { changes: vec![] }
                    } else {
                        StackOutcome::NoChanges
                    },
                    outputs,
                ));
            }
            return Err(fail(format!("change set for stack {} failed: {reason}", stack.display_name)));
        }
        if ctx.options.dry_run {
            let _ = cf.delete_change_set(&arn).await;
            if !exists {
                // CreateChangeSet of a new stack leaves it in REVIEW_IN_PROGRESS: remove that shell.
                let _ = cf.delete_stack(&stack.stack_name).await;
            }
            return Ok((StackOutcome::Planned { changes: info.changes }, BTreeMap::new()));
        }
        let since = now_ms();
        cf.execute_change_set(&arn).await?;
        let (done, _) = wait_stack(ctx, &*cf, stack, Some(since), waited).await?;
        finish(ctx, &*cf, stack, &input, done).await
    } else {
        let since = now_ms();
        if exists {
            if cf.update_stack(&input).await? == UpdateStarted::NoChanges {
                return Ok((StackOutcome::NoChanges, deployed.map(|d| d.outputs).unwrap_or_default()));
            }
        } else {
            cf.create_stack(&input).await?;
        }
        let (done, _) = wait_stack(ctx, &*cf, stack, Some(since), waited).await?;
        finish(ctx, &*cf, stack, &input, done).await
    }
}

pub(super) async fn finish(
    ctx: &Ctx,
    cf: &dyn StackDeployer,
    stack: &Stack,
    input: &StackInput,
    done: DeployedStack,
) -> Result<(StackOutcome, BTreeMap<String, String>), StackFailure> {
    // A stack created through a change set gets its termination protection now.
    if let Some(wanted) = input.termination_protection
        && done.termination_protection != wanted
        && !ctx.options.dry_run
    {
        cf.set_termination_protection(&stack.stack_name, wanted).await?;
    }
    Ok((StackOutcome::Deployed, done.outputs))
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A change set name unique per run and stack: `[a-zA-Z][-a-zA-Z0-9]*`, at most 128 chars.
pub fn change_set_name(run_id: &str, stack_name: &str) -> String {
    let clean =
        |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect::<String>();
    let mut name = format!(
        "aphex-{}-{}-{}",
        clean(run_id),
        clean(stack_name),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    if name.len() > 128 {
        name = format!("aphex-{}", uuid::Uuid::new_v4().simple());
    }
    name
}

pub(super) async fn check_bootstrap(
    ctx: &Ctx,
    target: &Target,
    stack: &Stack,
    required: u32,
    param: &str,
) -> Result<(), StackFailure> {
    let key = (target.deploy_role.clone(), target.region.clone(), param.to_owned());
    let mut cache = ctx.bootstrap.lock().await;
    let found = match cache.get(&key) {
        Some(v) => v.clone(),
        None => {
            let v = match ctx.cloud.ssm_parameter(target.deploy_role.as_deref(), &target.region, param).await
            {
                Ok(Some(value)) => {
                    value.trim().parse::<u32>().map_err(|_| format!("holds {value:?}, not a version number"))
                }
                Ok(None) => Err("does not exist".to_owned()),
                Err(e) => Err(format!("cannot be read ({e})")),
            };
            cache.insert(key, v.clone());
            v
        }
    };
    let hint =
        format!("run `{}`", crate::bootstrap::bootstrap_command(&target.account, &target.region, param));
    match found {
        Ok(v) if v >= required => Ok(()),
        Ok(v) => Err(fail(format!(
            "stack {} needs bootstrap version {required} or newer in aws://{}/{}, but {param} says {v}; {hint} to upgrade it",
            stack.display_name, target.account, target.region
        ))),
        Err(why) => Err(fail(format!(
            "aws://{}/{} is not bootstrapped for stack {} (SSM parameter {param} {why}); {hint}",
            target.account, target.region, stack.display_name
        ))),
    }
}

pub(super) async fn publish_assets(ctx: &Ctx, stack: &Stack, target: &Target) -> Result<(), StackFailure> {
    let mut jobs = Vec::new();
    for asset in &stack.file_assets {
        if asset.path.as_os_str().is_empty() {
            return Err(fail(format!(
                "file asset {:?} of stack {} is built by a command, which aphex does not run yet",
                asset.display_name, stack.display_name
            )));
        }
        for dest in &asset.destinations {
            let role = match &ctx.env.role {
                Some(r) => Some(r.clone()),
                None => dest
                    .assume_role_arn
                    .as_ref()
                    .map(|r| assembly::substitute(r, &target.account, &target.region)),
            };
            let region = dest
                .region
                .as_ref()
                .map(|r| assembly::substitute(r, &target.account, &target.region))
                .unwrap_or_else(|| target.region.clone());
            let bucket = assembly::substitute(&dest.bucket_name, &target.account, &region);
            let key = assembly::substitute(&dest.object_key, &target.account, &region);
            let asset = asset.clone();
            let cloud = ctx.cloud.clone();
            jobs.push(async move {
                let store = cloud.asset_store(role.as_deref(), &region).await?;
                if store.exists(&bucket, &key).await? {
                    return Ok::<bool, StackFailure>(false);
                }
                let bytes = tokio::task::spawn_blocking(move || assets::package(&asset))
                    .await
                    .map_err(|e| fail(format!("packaging task failed: {e}")))?
                    .map_err(|e| fail(e.to_string()))?;
                store.put(&bucket, &key, bytes).await.map_err(|e| {
                    fail(format!("{e}; is bucket {bucket} there (cdk bootstrap creates it) and writable by the publishing role?"))
                })?;
                Ok(true)
            });
        }
    }
    let total = jobs.len();
    let results = futures::future::join_all(jobs).await;
    let mut uploaded = 0;
    for r in results {
        if r? {
            uploaded += 1;
        }
    }
    if uploaded > 0 {
        progress(
            ctx,
            stack,
            &format!("published {uploaded} of {total} asset(s), the rest were already there"),
        );
    }
    Ok(())
}
