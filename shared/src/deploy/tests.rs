//! Engine tests on an in-memory CloudFormation/S3/SSM that answers as AWS does (events newest first,
//! failed creates roll back to ROLLBACK_COMPLETE), and the change-set path on the real SDK client
//! with `aws-smithy-mocks` (throttling retried, "didn't contain changes").

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::assembly::{FileAsset, FileDestination, Packaging, StackProperties};

#[derive(Default)]
struct State {
    stacks: HashMap<String, (DeployedStack, String)>,
    events: HashMap<String, Vec<StackEvent>>,
    change_sets: HashMap<String, (StackInput, ChangeSetKind)>,
    objects: HashSet<(String, String)>,
    ssm: HashMap<String, String>,
    secrets: HashMap<String, String>,
    /// Stacks that stay in this status, whatever is asked (a stuck custom resource does this).
    stuck: HashMap<String, String>,
    /// Stacks that get stuck in UPDATE_IN_PROGRESS at their next update.
    stick_at_update: HashSet<String>,
    /// Logical ids whose creation fails.
    failing: HashSet<String>,
    /// Every mutating call, in order.
    writes: Vec<String>,
    /// Every DescribeStacks and GetTemplate, in order.
    reads: Vec<String>,
    clock: i64,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<State>>);

impl Fake {
    fn bootstrapped() -> Fake {
        let f = Fake::default();
        f.0.lock().unwrap().ssm.insert("/cdk-bootstrap/hnb659fds/version".into(), "30".into());
        f
    }
    fn writes(&self) -> Vec<String> {
        self.0.lock().unwrap().writes.clone()
    }
}

fn event(s: &mut State, stack: &str, logical: &str, rtype: &str, status: &str, reason: Option<&str>) {
    s.clock += 1;
    let e = StackEvent {
        event_id: format!("e{}", s.clock),
        logical_id: logical.into(),
        resource_type: rtype.into(),
        status: status.into(),
        reason: reason.map(Into::into),
        timestamp_ms: now_ms() + s.clock,
    };
    s.events.entry(stack.into()).or_default().insert(0, e);
}

impl State {
    fn apply(&mut self, input: &StackInput, create: bool) {
        let body = input.template_body.clone().unwrap_or_default();
        let template: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let name = input.stack_name.clone();
        let op = if create { "CREATE" } else { "UPDATE" };
        event(
            self,
            &name,
            &name,
            "AWS::CloudFormation::Stack",
            &format!("{op}_IN_PROGRESS"),
            Some("User Initiated"),
        );
        let resources: Vec<(String, String)> = template["Resources"]
            .as_object()
            .map(|r| {
                r.iter()
                    .map(|(k, v)| (k.clone(), v["Type"].as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let mut done = Vec::new();
        let mut failed = false;
        for (logical, rtype) in &resources {
            if self.failing.contains(logical) {
                event(
                    self,
                    &name,
                    logical,
                    rtype,
                    &format!("{op}_FAILED"),
                    Some("Resource handler returned message: \"Invalid request\""),
                );
                failed = true;
                break;
            }
            event(self, &name, logical, rtype, &format!("{op}_COMPLETE"), None);
            done.push((logical.clone(), rtype.clone()));
        }
        let status = if failed {
            event(
                self,
                &name,
                &name,
                "AWS::CloudFormation::Stack",
                if create { "ROLLBACK_IN_PROGRESS" } else { "UPDATE_ROLLBACK_IN_PROGRESS" },
                None,
            );
            for (logical, rtype) in &done {
                event(self, &name, logical, rtype, "DELETE_COMPLETE", None);
            }
            if create { "ROLLBACK_COMPLETE" } else { "UPDATE_ROLLBACK_COMPLETE" }
        } else if create {
            "CREATE_COMPLETE"
        } else {
            "UPDATE_COMPLETE"
        };
        event(self, &name, &name, "AWS::CloudFormation::Stack", status, None);
        let outputs = if failed {
            BTreeMap::new()
        } else {
            template["Outputs"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v["Value"].as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut parameters: BTreeMap<String, String> = template["Parameters"]
            .as_object()
            .map(|p| {
                p.iter().filter_map(|(k, v)| Some((k.clone(), v["Default"].as_str()?.to_owned()))).collect()
            })
            .unwrap_or_default();
        // CloudFormation keeps what an update does not send.
        let before = self.stacks.get(&name).map(|(d, _)| d.clone()).unwrap_or_default();
        for (k, v) in &input.parameters {
            let value = match v {
                ParameterValue::Value { value, .. } => value.clone(),
                ParameterValue::Previous => before.parameters.get(k).cloned().unwrap_or_default(),
            };
            parameters.insert(k.clone(), value);
        }
        let stack = DeployedStack {
            stack_id: format!("arn:aws:cloudformation:us-east-1:111111111111:stack/{name}/1"),
            status: status.into(),
            status_reason: None,
            outputs,
            parameters,
            tags: input.tags.clone().unwrap_or(before.tags),
            termination_protection: if create {
                input.termination_protection.unwrap_or(false)
            } else {
                before.termination_protection
            },
            notification_arns: input.notification_arns.clone().unwrap_or(before.notification_arns),
            role_arn: input.role_arn.clone().or(before.role_arn),
        };
        let body = if failed && !create { self.stacks[&name].1.clone() } else { body };
        self.stacks.insert(name, (stack, body));
    }
}

#[async_trait]
impl StackDeployer for Fake {
    async fn describe_stack(&self, name: &str) -> Result<Option<DeployedStack>, CloudError> {
        let mut s = self.0.lock().unwrap();
        s.reads.push(format!("DescribeStacks {name}"));
        let found = s
            .stacks
            .values()
            .find(|(d, _)| d.stack_id == name)
            .or_else(|| s.stacks.get(name))
            .map(|(d, _)| d.clone());
        Ok(found.map(|mut d| {
            if let Some(status) = s.stuck.get(name) {
                d.status = status.clone();
            }
            d
        }))
    }
    async fn template_body(&self, name: &str) -> Result<String, CloudError> {
        let mut s = self.0.lock().unwrap();
        s.reads.push(format!("GetTemplate {name}"));
        Ok(s.stacks[name].1.clone())
    }
    async fn create_stack(&self, input: &StackInput) -> Result<(), CloudError> {
        let mut s = self.0.lock().unwrap();
        s.writes.push(format!("CreateStack {}", input.stack_name));
        s.apply(input, true);
        Ok(())
    }
    async fn update_stack(&self, input: &StackInput) -> Result<UpdateStarted, CloudError> {
        let mut s = self.0.lock().unwrap();
        let (d, body) = &s.stacks[&input.stack_name];
        if Some(body) == input.template_body.as_ref()
            && input.tags.as_ref().is_none_or(|t| *t == d.tags)
            && input.notification_arns.as_ref().is_none_or(|n| *n == d.notification_arns)
        {
            return Ok(UpdateStarted::NoChanges);
        }
        s.writes.push(format!("UpdateStack {}", input.stack_name));
        if s.stick_at_update.remove(&input.stack_name) {
            let name = input.stack_name.clone();
            event(
                &mut s,
                &name,
                &name,
                "AWS::CloudFormation::Stack",
                "UPDATE_IN_PROGRESS",
                Some("User Initiated"),
            );
            event(&mut s, &name, "Hook", "AWS::CloudFormation::CustomResource", "UPDATE_IN_PROGRESS", None);
            s.stuck.insert(name, "UPDATE_IN_PROGRESS".into());
            return Ok(UpdateStarted::Started);
        }
        s.apply(input, false);
        Ok(UpdateStarted::Started)
    }
    async fn delete_stack(&self, name: &str) -> Result<(), CloudError> {
        let mut s = self.0.lock().unwrap();
        s.writes.push(format!("DeleteStack {name}"));
        let key = s
            .stacks
            .iter()
            .find(|(_, (d, _))| d.stack_id == name)
            .map(|(k, _)| k.clone())
            .unwrap_or(name.into());
        s.stacks.remove(&key);
        Ok(())
    }
    async fn create_change_set(
        &self,
        input: &StackInput,
        name: &str,
        kind: ChangeSetKind,
    ) -> Result<String, CloudError> {
        let mut s = self.0.lock().unwrap();
        s.writes.push(format!("CreateChangeSet {}", input.stack_name));
        let arn = format!("arn:changeSet/{name}");
        s.change_sets.insert(arn.clone(), (input.clone(), kind));
        Ok(arn)
    }
    async fn describe_change_set(&self, arn: &str) -> Result<ChangeSetInfo, CloudError> {
        let s = self.0.lock().unwrap();
        let (input, _) = &s.change_sets[arn];
        let template: serde_json::Value =
            serde_json::from_str(input.template_body.as_deref().unwrap_or("{}")).unwrap_or_default();
        let old: serde_json::Value = s
            .stacks
            .get(&input.stack_name)
            .map(|(_, b)| serde_json::from_str(b).unwrap_or_default())
            .unwrap_or_default();
        let mut changes = Vec::new();
        for (k, v) in template["Resources"].as_object().into_iter().flatten() {
            let action = match old["Resources"].get(k) {
                None => "Add",
                Some(o) if o != v => "Modify",
                Some(_) => continue,
            };
            changes.push(ResourceChange {
                action: action.into(),
                logical_id: k.clone(),
                resource_type: v["Type"].as_str().unwrap_or_default().into(),
                replacement: "False".into(),
            });
        }
        // Stack-level settings count as changes too (the change set applies them).
        let settings_differ = s.stacks.get(&input.stack_name).is_some_and(|(d, _)| {
            input.tags.as_ref().is_some_and(|t| *t != d.tags)
                || input.notification_arns.as_ref().is_some_and(|n| *n != d.notification_arns)
        });
        if changes.is_empty() && !settings_differ {
            return Ok(ChangeSetInfo { status: "FAILED".into(), status_reason: Some("The submitted information didn't contain changes. Submit different information to create a change set.".into()), changes });
        }
        Ok(ChangeSetInfo { status: "CREATE_COMPLETE".into(), status_reason: None, changes })
    }
    async fn execute_change_set(&self, arn: &str) -> Result<(), CloudError> {
        let mut s = self.0.lock().unwrap();
        s.writes.push("ExecuteChangeSet".into());
        let (input, kind) = s.change_sets.remove(arn).expect("known change set");
        s.apply(&input, kind == ChangeSetKind::Create);
        Ok(())
    }
    async fn delete_change_set(&self, arn: &str) -> Result<(), CloudError> {
        self.0.lock().unwrap().change_sets.remove(arn);
        Ok(())
    }
    async fn stack_events(&self, name: &str, since_ms: i64) -> Result<Vec<StackEvent>, CloudError> {
        let s = self.0.lock().unwrap();
        let all = s.events.get(name).cloned().unwrap_or_default();
        Ok(all.into_iter().take_while(|e| e.timestamp_ms >= since_ms).collect())
    }
    async fn set_termination_protection(&self, name: &str, enabled: bool) -> Result<(), CloudError> {
        let mut s = self.0.lock().unwrap();
        s.writes.push(format!("UpdateTerminationProtection {name}"));
        if let Some((d, _)) = s.stacks.get_mut(name) {
            d.termination_protection = enabled;
        }
        Ok(())
    }
}

#[async_trait]
impl AssetStore for Fake {
    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, CloudError> {
        Ok(self.0.lock().unwrap().objects.contains(&(bucket.into(), key.into())))
    }
    async fn put(&self, bucket: &str, key: &str, _body: Vec<u8>) -> Result<(), CloudError> {
        let mut s = self.0.lock().unwrap();
        s.writes.push(format!("PutObject {key}"));
        s.objects.insert((bucket.into(), key.into()));
        Ok(())
    }
}

#[async_trait]
impl Cloud for Fake {
    async fn deployer(
        &self,
        _role: Option<&str>,
        _region: &str,
    ) -> Result<Arc<dyn StackDeployer>, CloudError> {
        Ok(Arc::new(self.clone()))
    }
    async fn asset_store(
        &self,
        _role: Option<&str>,
        _region: &str,
    ) -> Result<Arc<dyn AssetStore>, CloudError> {
        Ok(Arc::new(self.clone()))
    }
    async fn ssm_parameter(
        &self,
        _role: Option<&str>,
        _region: &str,
        name: &str,
    ) -> Result<Option<String>, CloudError> {
        Ok(self.0.lock().unwrap().ssm.get(name).cloned())
    }
    async fn secret_value(
        &self,
        _role: Option<&str>,
        _region: &str,
        id: &str,
    ) -> Result<Option<String>, CloudError> {
        Ok(self.0.lock().unwrap().secrets.get(id).cloned())
    }
    fn template_url(&self, bucket: &str, key: &str, _region: &str) -> String {
        format!("https://{bucket}/{key}")
    }
}

/// A stack with no template or assets, for pure tests.
pub(crate) fn bare_stack(display: &str, name: &str) -> Stack {
    Stack {
        id: name.into(),
        stack_name: name.into(),
        display_name: display.into(),
        environment: "aws://unknown-account/unknown-region".into(),
        template_path: Default::default(),
        properties: Default::default(),
        dependencies: vec![],
        file_assets: vec![],
        docker_assets: vec![],
        assets_bootstrap: None,
    }
}

fn env() -> Environment {
    crate::config::parse(
        "t.yaml",
        "version: \"1.0\"\nbuild:\n  commands: [\"true\"]\nenvironments:\n  - name: dev\n    account: \"111111111111\"\n    region: us-east-1\n    stacks: [{name: A}]\n",
    )
    .unwrap()
    .environments
    .remove(0)
}

/// A stack whose template has one resource per `resources` entry and an output `Out` = `value`.
fn stack(dir: &Path, name: &str, deps: &[&str], resources: &[&str], value: &str) -> Stack {
    let res: serde_json::Map<String, serde_json::Value> = resources
        .iter()
        .map(|r| (r.to_string(), json!({"Type": "AWS::SQS::Queue", "Properties": {"V": value}})))
        .collect();
    let template = json!({"Resources": res, "Outputs": {"Out": {"Value": value}},
        "Parameters": {"BootstrapVersion": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/cdk-bootstrap/hnb659fds/version",
            "Description": "Version of the CDK Bootstrap resources in this environment, automatically retrieved from SSM Parameter Store. [cdk:skip]"}}});
    let path = dir.join(format!("{name}.template.json"));
    std::fs::write(&path, template.to_string()).unwrap();
    let code = dir.join(format!("{name}-code"));
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(code.join("index.js"), value).unwrap();
    Stack {
        id: name.into(),
        stack_name: name.into(),
        display_name: name.into(),
        environment: "aws://unknown-account/unknown-region".into(),
        template_path: path,
        properties: StackProperties {
            template_file: format!("{name}.template.json"),
            assume_role_arn: Some("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/deploy".into()),
            requires_bootstrap_stack_version: Some(6),
            bootstrap_stack_version_ssm_parameter: Some("/cdk-bootstrap/hnb659fds/version".into()),
            tags: Some(BTreeMap::from([("team".to_owned(), "x".to_owned())])),
            ..Default::default()
        },
        dependencies: deps.iter().map(|d| d.to_string()).collect(),
        file_assets: vec![FileAsset {
            id: format!("{name}{value}"),
            display_name: format!("{name}/Code"),
            path: code,
            packaging: Packaging::Zip,
            destinations: vec![FileDestination {
                bucket_name: "assets-${AWS::AccountId}-${AWS::Region}".into(),
                object_key: format!("{name}-{value}.zip"),
                region: None,
                assume_role_arn: None,
            }],
        }],
        docker_assets: vec![],
        assets_bootstrap: None,
    }
}

fn plan_of(stacks: Vec<Stack>) -> Vec<PlannedStack> {
    let asm = CloudAssembly { dir: Default::default(), version: "55.0.0".into(), stacks };
    let refs: Vec<crate::config::StackRef> = asm
        .stacks
        .iter()
        .map(|s| crate::config::StackRef {
            name: s.stack_name.clone(),
            path: None,
            depends_on: vec![],
            parameters: Default::default(),
        })
        .collect();
    select::plan(&asm, "dev", &refs, &[]).unwrap()
}

fn options(method: Method) -> DeployOptions {
    DeployOptions {
        method,
        progress: false,
        poll_min: Duration::from_millis(1),
        poll_max: Duration::from_millis(5),
        run_id: "r1".into(),
        ..Default::default()
    }
}

fn outcomes(r: &DeployReport) -> Vec<(&str, &StackOutcome)> {
    r.stacks.iter().map(|s| (s.stack_name.as_str(), &s.outcome)).collect()
}

#[tokio::test]
async fn deploys_in_order_then_skips_unchanged_without_any_write() {
    for method in [Method::Direct, Method::ChangeSet] {
        let tmp = tempfile::tempdir().unwrap();
        let fake = Fake::bootstrapped();
        let stacks =
            vec![stack(tmp.path(), "B", &["A"], &["Q"], "b1"), stack(tmp.path(), "A", &[], &["Q"], "a1")];
        let report =
            deploy_plan(Arc::new(fake.clone()), &env(), plan_of(stacks.clone()), &options(method)).await;
        assert!(report.success(), "{:?}", report.failures());
        assert_eq!(outcomes(&report), [("A", &StackOutcome::Deployed), ("B", &StackOutcome::Deployed)]);
        assert_eq!(report.outputs["A"]["Out"], "a1");
        assert_eq!(report.outputs.keys().collect::<Vec<_>>(), ["A", "B"]);
        let writes = fake.writes();
        let a = writes.iter().position(|w| w.ends_with(" A") || w == "ExecuteChangeSet").unwrap();
        let b = writes.iter().position(|w| w.ends_with(" B")).unwrap();
        assert!(a < b, "{writes:?}");
        assert!(writes.contains(&"PutObject A-a1.zip".to_owned()), "{writes:?}");

        let before = fake.writes().len();
        let again = deploy_plan(Arc::new(fake.clone()), &env(), plan_of(stacks), &options(method)).await;
        assert_eq!(outcomes(&again), [("A", &StackOutcome::Unchanged), ("B", &StackOutcome::Unchanged)]);
        assert_eq!(again.outputs["B"]["Out"], "b1");
        assert_eq!(
            fake.writes().len(),
            before,
            "a no-op deploy writes nothing: {:?}",
            &fake.writes()[before..]
        );
    }
}

/// Every file asset the assembly lists is published, as `cdk deploy` publishes it, whatever the
/// method and however the template reaches CloudFormation: the stack's own template too (the CDK's
/// asset manifest lists it), also when it goes inline (found by the parity suite,
/// `tests/tests/parity_examples.rs`: the assets bucket differed from the CLI's).
#[tokio::test]
async fn every_listed_asset_is_published_whatever_the_method_and_template_size() {
    for method in [Method::Direct, Method::ChangeSet] {
        for big in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let fake = Fake::bootstrapped();
            let value = if big { "v".repeat(MAX_TEMPLATE_BODY) } else { "a1".to_owned() };
            let mut s = stack(tmp.path(), "A", &[], &["Q"], &value);
            let template_key = "0123abcd.json";
            s.properties.stack_template_asset_object_url =
                Some(format!("s3://assets-${{AWS::AccountId}}-${{AWS::Region}}/{template_key}"));
            s.file_assets.push(FileAsset {
                id: "0123abcd".into(),
                display_name: "A Template".into(),
                path: s.template_path.clone(),
                packaging: Packaging::File,
                destinations: vec![FileDestination {
                    bucket_name: "assets-${AWS::AccountId}-${AWS::Region}".into(),
                    object_key: template_key.into(),
                    region: None,
                    assume_role_arn: None,
                }],
            });
            let code_key = s.file_assets[0].destinations[0].object_key.clone();
            let report =
                deploy_plan(Arc::new(fake.clone()), &env(), plan_of(vec![s]), &options(method)).await;
            assert!(report.success(), "{method:?} big={big}: {:?}", report.failures());
            let objects = fake.0.lock().unwrap().objects.clone();
            for key in [code_key.as_str(), template_key] {
                assert!(
                    objects.contains(&("assets-111111111111-us-east-1".to_owned(), key.to_owned())),
                    "{method:?} big={big}: {key} not published: {objects:?}"
                );
            }
        }
    }
}

/// A topic attached outside the app stays through updates when the app sets none; notification
/// ARNs, tags or termination protection the app changes are deployed with an unchanged template.
#[tokio::test]
async fn stack_settings_are_kept_unless_set_and_deployed_when_changed() {
    for method in [Method::Direct, Method::ChangeSet] {
        let tmp = tempfile::tempdir().unwrap();
        let fake = Fake::bootstrapped();
        let deploy = |s: Stack| {
            let fake = fake.clone();
            async move {
                let r = deploy_plan(Arc::new(fake), &env(), plan_of(vec![s]), &options(method)).await;
                assert!(r.success(), "{:?}", r.failures());
                r.stacks[0].outcome.clone()
            }
        };
        let topic = "arn:aws:sns:us-east-1:111111111111:ops".to_owned();
        assert_eq!(deploy(stack(tmp.path(), "A", &[], &["Q"], "1")).await, StackOutcome::Deployed);
        fake.0.lock().unwrap().stacks.get_mut("A").unwrap().0.notification_arns = vec![topic.clone()];
        // A new template; the app sets no notification ARNs: the topic stays.
        assert_eq!(deploy(stack(tmp.path(), "A", &[], &["Q"], "2")).await, StackOutcome::Deployed);
        assert_eq!(fake.0.lock().unwrap().stacks["A"].0.notification_arns, std::slice::from_ref(&topic));
        assert_eq!(deploy(stack(tmp.path(), "A", &[], &["Q"], "2")).await, StackOutcome::Unchanged);

        // The same template with settings the app changes: each one deploys, then is unchanged.
        let mut s = stack(tmp.path(), "A", &[], &["Q"], "2");
        let new_topic = "arn:aws:sns:us-east-1:111111111111:deploys".to_owned();
        s.properties.notification_arns = Some(vec![new_topic.clone()]);
        assert_eq!(deploy(s.clone()).await, StackOutcome::Deployed);
        assert_eq!(fake.0.lock().unwrap().stacks["A"].0.notification_arns, [new_topic]);
        assert_eq!(deploy(s.clone()).await, StackOutcome::Unchanged);
        s.properties.tags = Some(BTreeMap::from([("team".to_owned(), "y".to_owned())]));
        assert_eq!(deploy(s.clone()).await, StackOutcome::Deployed);
        assert_eq!(deploy(s.clone()).await, StackOutcome::Unchanged);
        s.properties.termination_protection = Some(true);
        assert_ne!(deploy(s.clone()).await, StackOutcome::Unchanged);
        assert!(fake.0.lock().unwrap().stacks["A"].0.termination_protection);
        assert_eq!(deploy(s).await, StackOutcome::Unchanged);
    }
}

/// Waits that never end, on the in-memory CloudFormation: moto cannot be used, nothing is ever
/// IN_PROGRESS there. A stack already in UPDATE_IN_PROGRESS when the deploy starts, and one whose
/// own update never finishes, each stop at the deadline with the stack, its status, the newest event
/// and what to do.
#[tokio::test]
async fn every_wait_has_a_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Fake::bootstrapped();
    let opts = DeployOptions {
        timeout: Some(Duration::from_millis(60)),
        heartbeat: Duration::from_millis(20),
        ..options(Method::Direct)
    };
    let deploy = |value: &str| {
        let (fake, opts) = (fake.clone(), opts.clone());
        let s = stack(tmp.path(), "A", &[], &["Q"], value);
        async move { deploy_plan(Arc::new(fake), &env(), plan_of(vec![s]), &opts).await }
    };
    assert!(deploy("1").await.success());

    // Someone else's operation never ends.
    {
        let mut s = fake.0.lock().unwrap();
        event(
            &mut s,
            "A",
            "Hook",
            "AWS::CloudFormation::CustomResource",
            "UPDATE_IN_PROGRESS",
            Some("waiting for a response"),
        );
        s.stuck.insert("A".into(), "UPDATE_IN_PROGRESS".into());
    }
    let writes = fake.writes().len();
    let report = deploy("2").await;
    let StackOutcome::Failed { message, final_status, .. } = &report.stacks[0].outcome else {
        panic!("{:?}", report.stacks[0].outcome)
    };
    assert!(
        message.starts_with("stack A: gave up waiting for the operation already running after "),
        "{message}"
    );
    assert!(message.contains("it is still UPDATE_IN_PROGRESS"), "{message}");
    assert!(
        message.contains("newest event: Hook AWS::CloudFormation::CustomResource UPDATE_IN_PROGRESS (waiting for a response)"),
        "{message}"
    );
    assert!(message.contains("cancel-update-stack --stack-name A"), "{message}");
    assert_eq!(final_status.as_deref(), Some("UPDATE_IN_PROGRESS"));
    assert_eq!(fake.writes().len(), writes, "nothing written while someone else's operation runs");

    // Our own update never ends.
    {
        let mut s = fake.0.lock().unwrap();
        s.stuck.clear();
        s.stick_at_update.insert("A".into());
    }
    let report = deploy("3").await;
    let StackOutcome::Failed { message, .. } = &report.stacks[0].outcome else {
        panic!("{:?}", report.stacks[0].outcome)
    };
    assert!(message.starts_with("stack A: gave up waiting for its deploy after "), "{message}");
    assert!(
        message.contains("newest event: Hook AWS::CloudFormation::CustomResource UPDATE_IN_PROGRESS"),
        "{message}"
    );
}

#[test]
fn waited_times_read_well() {
    for (secs, text) in [(0.0, "0.0s"), (6.25, "6.2s"), (65.0, "1m05s"), (3723.0, "1h02m03s")] {
        assert_eq!(wait::elapsed_text(Duration::from_secs_f64(secs)), text);
    }
}

#[tokio::test]
async fn longest_chain_starts_first_and_the_checks_reads_are_not_repeated() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Fake::bootstrapped();
    let stacks = |v: &str| {
        vec![
            stack(tmp.path(), "Solo", &[], &["Q"], v),
            stack(tmp.path(), "A", &[], &["Q"], v),
            stack(tmp.path(), "B", &["A"], &["Q"], v),
            stack(tmp.path(), "C", &["B"], &["Q"], v),
        ]
    };
    let plan = plan_of(stacks("1"));
    let names: Vec<&str> = plan.iter().map(|p| p.stack.stack_name.as_str()).collect();
    assert_eq!(names, ["Solo", "A", "B", "C"]);
    assert_eq!(chain_heights(&plan), [0, 2, 1, 0]);

    let one_at_a_time = DeployOptions { concurrency: 1, ..options(Method::Direct) };
    let report = deploy_plan(Arc::new(fake.clone()), &env(), plan, &one_at_a_time).await;
    assert!(report.success(), "{:?}", report.failures());
    let creates: Vec<String> = fake.writes().into_iter().filter(|w| w.starts_with("CreateStack")).collect();
    assert_eq!(creates, ["CreateStack A", "CreateStack B", "CreateStack Solo", "CreateStack C"]);

    // An update: the up-front check's DescribeStacks and GetTemplate serve the deploy too.
    fake.0.lock().unwrap().reads.clear();
    let report =
        deploy_plan(Arc::new(fake.clone()), &env(), plan_of(stacks("2")), &options(Method::Direct)).await;
    assert!(report.success(), "{:?}", report.failures());
    assert!(report.stacks.iter().all(|s| s.outcome == StackOutcome::Deployed));
    let reads = fake.0.lock().unwrap().reads.clone();
    for name in ["Solo", "A", "B", "C"] {
        let count = |call: &str| reads.iter().filter(|r| **r == format!("{call} {name}")).count();
        assert_eq!(count("GetTemplate"), 1, "{reads:?}");
        // One for the check, one poll after UpdateStack (the fake completes at once).
        assert_eq!(count("DescribeStacks"), 2, "{reads:?}");
    }
}

#[tokio::test]
async fn failed_resource_is_named_and_dependents_do_not_start() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Fake::bootstrapped();
    fake.0.lock().unwrap().failing.insert("BadQueue".into());
    let stacks = vec![
        stack(tmp.path(), "A", &[], &["GoodQueue", "BadQueue"], "a"),
        stack(tmp.path(), "B", &["A"], &["Q"], "b"),
    ];
    let report = deploy_plan(Arc::new(fake.clone()), &env(), plan_of(stacks), &options(Method::Direct)).await;
    assert!(!report.success());
    let StackOutcome::Failed { message, resource, final_status } = &report.stacks[0].outcome else {
        panic!("{report:?}")
    };
    assert_eq!(
        message,
        "stack A failed: resource BadQueue (AWS::SQS::Queue) CREATE_FAILED: Resource handler returned message: \"Invalid request\"; the stack rolled back (ROLLBACK_COMPLETE), undoing GoodQueue"
    );
    assert_eq!(resource.as_ref().unwrap().logical_id, "BadQueue");
    assert_eq!(final_status.as_deref(), Some("ROLLBACK_COMPLETE"));
    assert_eq!(
        report.stacks[1].outcome,
        StackOutcome::NotStarted { reason: "it depends on A, which did not deploy".into() }
    );
    assert!(!fake.writes().iter().any(|w| w.ends_with(" B")));

    // Next run: A sits in ROLLBACK_COMPLETE, so it is deleted and created again.
    fake.0.lock().unwrap().failing.clear();
    let stacks = vec![
        stack(tmp.path(), "A", &[], &["GoodQueue", "BadQueue"], "a"),
        stack(tmp.path(), "B", &["A"], &["Q"], "b"),
    ];
    let report = deploy_plan(Arc::new(fake.clone()), &env(), plan_of(stacks), &options(Method::Direct)).await;
    assert!(report.success(), "{:?}", report.failures());
    let writes = fake.writes();
    let del = writes.iter().position(|w| w.starts_with("DeleteStack")).unwrap();
    assert!(writes[del + 1..].contains(&"CreateStack A".to_owned()), "{writes:?}");
}

#[tokio::test]
async fn bootstrap_is_checked_with_the_exact_command() {
    let tmp = tempfile::tempdir().unwrap();
    for (ssm, expect) in [
        (
            None,
            "aws://111111111111/us-east-1 is not bootstrapped for stack A (SSM parameter /cdk-bootstrap/hnb659fds/version does not exist); run `cdk bootstrap aws://111111111111/us-east-1`",
        ),
        (
            Some("5"),
            "stack A needs bootstrap version 6 or newer in aws://111111111111/us-east-1, but /cdk-bootstrap/hnb659fds/version says 5; run `cdk bootstrap aws://111111111111/us-east-1` to upgrade it",
        ),
    ] {
        let fake = Fake::default();
        if let Some(v) = ssm {
            fake.0.lock().unwrap().ssm.insert("/cdk-bootstrap/hnb659fds/version".into(), v.into());
        }
        let report = deploy_plan(
            Arc::new(fake.clone()),
            &env(),
            plan_of(vec![stack(tmp.path(), "A", &[], &["Q"], "a")]),
            &options(Method::Direct),
        )
        .await;
        assert_eq!(report.failures(), [expect]);
        assert!(fake.writes().is_empty());
    }
}

#[tokio::test]
async fn dry_run_describes_changes_and_executes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = Fake::bootstrapped();
    deploy_plan(
        Arc::new(fake.clone()),
        &env(),
        plan_of(vec![stack(tmp.path(), "A", &[], &["Q"], "a")]),
        &options(Method::Direct),
    )
    .await;
    let dry = DeployOptions { dry_run: true, ..options(Method::ChangeSet) };
    let report = deploy_plan(
        Arc::new(fake.clone()),
        &env(),
        plan_of(vec![stack(tmp.path(), "A", &[], &["Q", "Role"], "a2")]),
        &dry,
    )
    .await;
    let StackOutcome::Planned { changes } = &report.stacks[0].outcome else { panic!("{report:?}") };
    assert_eq!(
        summarize_changes(changes).lines().next().unwrap(),
        "1 to add, 1 to modify, 0 to replace, 0 to delete"
    );
    assert!(!fake.writes().contains(&"ExecuteChangeSet".to_owned()));
    assert_eq!(fake.0.lock().unwrap().stacks["A"].0.outputs["Out"], "a");
}

#[test]
fn environment_mismatch_and_placeholders() {
    let mut s = stack(tempfile::tempdir().unwrap().path(), "A", &[], &["Q"], "a");
    let t = resolve_target(&env(), &s).ok().unwrap();
    assert_eq!(t.deploy_role.as_deref(), Some("arn:aws:iam::111111111111:role/deploy"));
    s.environment = "aws://222222222222/us-east-1".into();
    let err = resolve_target(&env(), &s).err().unwrap().message;
    assert!(err.starts_with("stack A is bound to aws://222222222222/us-east-1 but environment dev is aws://111111111111/us-east-1"), "{err}");
    let mut e = env();
    e.role = Some("arn:aws:iam::111111111111:role/custom".into());
    s.environment = "aws://111111111111/unknown-region".into();
    let t = resolve_target(&e, &s).ok().unwrap();
    assert_eq!(
        (t.deploy_role.as_deref(), t.exec_role),
        (Some("arn:aws:iam::111111111111:role/custom"), None)
    );
}

#[test]
fn polling_backs_off_to_the_cap() {
    let mut d = Duration::from_millis(100);
    let mut seen = vec![];
    for _ in 0..12 {
        seen.push(d.as_millis());
        d = next_delay(d, Duration::from_secs(5));
    }
    assert_eq!(&seen[..4], [100, 150, 225, 337]);
    assert_eq!(*seen.last().unwrap(), 5000);
}

mod sdk {
    //! The change-set path on the real aws-sdk-cloudformation client, answered by aws-smithy-mocks.
    use super::*;
    use aws_sdk_cloudformation::Client;
    use aws_sdk_cloudformation::operation::create_change_set::{CreateChangeSetError, CreateChangeSetOutput};
    use aws_sdk_cloudformation::operation::delete_change_set::DeleteChangeSetOutput;
    use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;
    use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
    use aws_sdk_cloudformation::operation::get_template::GetTemplateOutput;
    use aws_sdk_cloudformation::types::{ChangeSetStatus, Stack as CfnStack, StackStatus};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    #[derive(Clone)]
    struct MockCloud {
        cf: Arc<cloud::SdkStackDeployer>,
        fake: Fake,
    }

    #[async_trait]
    impl Cloud for MockCloud {
        async fn deployer(&self, _r: Option<&str>, _g: &str) -> Result<Arc<dyn StackDeployer>, CloudError> {
            Ok(self.cf.clone())
        }
        async fn asset_store(&self, _r: Option<&str>, _g: &str) -> Result<Arc<dyn AssetStore>, CloudError> {
            Ok(Arc::new(self.fake.clone()))
        }
        async fn ssm_parameter(
            &self,
            _r: Option<&str>,
            _g: &str,
            _n: &str,
        ) -> Result<Option<String>, CloudError> {
            Ok(Some("30".into()))
        }
        async fn secret_value(
            &self,
            _r: Option<&str>,
            _g: &str,
            _id: &str,
        ) -> Result<Option<String>, CloudError> {
            Ok(None)
        }
        fn template_url(&self, bucket: &str, key: &str, _region: &str) -> String {
            format!("https://{bucket}/{key}")
        }
    }

    #[tokio::test]
    async fn throttled_change_set_is_retried_and_no_changes_is_success() {
        let tmp = tempfile::tempdir().unwrap();
        let describe = mock!(Client::describe_stacks).then_output(|| {
            DescribeStacksOutput::builder()
                .stacks(
                    CfnStack::builder()
                        .stack_name("A")
                        .stack_id("arn:stack/A/1")
                        .stack_status(StackStatus::UpdateComplete)
                        .outputs(
                            aws_sdk_cloudformation::types::Output::builder()
                                .output_key("Out")
                                .output_value("old")
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
        let template = mock!(Client::get_template)
            .then_output(|| GetTemplateOutput::builder().template_body("{\"Resources\":{}}").build());
        let create = mock!(Client::create_change_set)
            .sequence()
            .error(|| {
                CreateChangeSetError::generic(
                    ErrorMetadata::builder().code("Throttling").message("Rate exceeded").build(),
                )
            })
            .times(2)
            .output(|| {
                CreateChangeSetOutput::builder().id("arn:changeSet/x").stack_id("arn:stack/A/1").build()
            })
            .build();
        let describe_cs = mock!(Client::describe_change_set).then_output(|| {
            DescribeChangeSetOutput::builder()
                .status(ChangeSetStatus::Failed)
                .status_reason("The submitted information didn't contain changes. Submit different information to create a change set.")
                .build()
        });
        let delete_cs =
            mock!(Client::delete_change_set).then_output(|| DeleteChangeSetOutput::builder().build());
        let client = mock_client!(
            aws_sdk_cloudformation,
            RuleMode::MatchAny,
            [&describe, &template, &create, &describe_cs, &delete_cs],
            |b| b.retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1))
            )
        );
        let cloud =
            MockCloud { cf: Arc::new(cloud::SdkStackDeployer { client }), fake: Fake::bootstrapped() };
        let report = deploy_plan(
            Arc::new(cloud),
            &env(),
            plan_of(vec![stack(tmp.path(), "A", &[], &["Q"], "a")]),
            &options(Method::ChangeSet),
        )
        .await;
        assert!(report.success(), "{:?}", report.failures());
        assert_eq!(report.stacks[0].outcome, StackOutcome::NoChanges);
        assert_eq!(report.outputs["A"]["Out"], "old");
        assert_eq!(create.num_calls(), 3, "two throttled attempts, then success");
        assert_eq!(delete_cs.num_calls(), 1, "the empty change set is cleaned up");
    }

    /// What the adapter puts on the wire: a setting the app does not set is absent from UpdateStack,
    /// CreateStack and CreateChangeSet (CloudFormation keeps what the stack has); one it sets is sent.
    /// moto cannot show this: it neither stores nor returns a stack's NotificationARNs on update.
    #[tokio::test]
    async fn unset_settings_are_absent_from_the_request() {
        use aws_sdk_cloudformation::operation::create_stack::CreateStackOutput;
        use aws_sdk_cloudformation::operation::update_stack::UpdateStackOutput;
        for app_sets in [false, true] {
            let arns = app_sets.then(|| vec!["arn:aws:sns:us-east-1:111111111111:ops".to_owned()]);
            let tags = app_sets.then(|| BTreeMap::from([("team".to_owned(), "a".to_owned())]));
            let input = StackInput {
                stack_name: "A".into(),
                template_body: Some("{}".into()),
                notification_arns: arns.clone(),
                tags: tags.clone(),
                termination_protection: app_sets.then_some(true),
                ..Default::default()
            };
            let same = move |n: &Option<Vec<String>>, t: &Option<Vec<aws_sdk_cloudformation::types::Tag>>| {
                *n == arns
                    && t.as_ref().map(|t| {
                        t.iter()
                            .map(|t| {
                                (
                                    t.key().unwrap_or_default().to_owned(),
                                    t.value().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect::<BTreeMap<_, _>>()
                    }) == tags
            };
            let (s1, s2, s3) = (same.clone(), same.clone(), same);
            let update = mock!(Client::update_stack)
                .match_requests(move |r| s1(&r.notification_arns, &r.tags))
                .then_output(|| UpdateStackOutput::builder().stack_id("arn:stack/A/1").build());
            let create = mock!(Client::create_stack)
                .match_requests(move |r| {
                    s2(&r.notification_arns, &r.tags)
                        && r.enable_termination_protection == app_sets.then_some(true)
                })
                .then_output(|| CreateStackOutput::builder().stack_id("arn:stack/A/1").build());
            let change_set = mock!(Client::create_change_set)
                .match_requests(move |r| s3(&r.notification_arns, &r.tags))
                .then_output(|| CreateChangeSetOutput::builder().id("arn:changeSet/x").build());
            let client =
                mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, [&update, &create, &change_set]);
            let cf = cloud::SdkStackDeployer { client };
            cf.update_stack(&input).await.unwrap();
            cf.create_stack(&input).await.unwrap();
            cf.create_change_set(&input, "x", ChangeSetKind::Update).await.unwrap();
            assert_eq!(
                (update.num_calls(), create.num_calls(), change_set.num_calls()),
                (1, 1, 1),
                "{app_sets}"
            );
        }
    }
}
