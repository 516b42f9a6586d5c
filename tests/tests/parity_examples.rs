//! The parity suite (issue #11): every cloud assembly in `../shared/fixtures/cdk/aws-cdk-examples/`
//! (13 public example apps, synthesized by the real CDK CLI) deployed by `aphex deploy` and by the
//! real `cdk deploy` into two fresh moto servers, one per tool, each bootstrapped once by the real
//! `cdk bootstrap`; then compared by `aphex_tests::parity::differences`: each stack's status, its
//! (logical id, resource type) pairs, its outputs, its exports, and the S3 objects the assets were
//! published to. Where moto itself cannot deploy an app, [`EXPECTED`] says why and the test expects
//! that failure from both tools. Prints a table (app, stacks, times, result) to stderr.
//!
//! Both tools deploy with `--method direct` (CreateStack / UpdateStack): moto's change-set support is
//! what `TOOLCHAIN.md` warns about, and the comparison is of what the deploys leave, not of the method.
//! The apps' stack names and explicit resource names are all distinct, so every app goes into the
//! same server, apps in parallel (aphex on one thread, cdk on two: its start-up is the long part).
//! Retries are capped for aphex (`APHEX_AWS_MAX_ATTEMPTS=3`, from `Moto::env`); the CLI keeps its own
//! retry settings (it does not read `AWS_MAX_ATTEMPTS`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aphex::assembly::CloudAssembly;
use aphex_tests::deploy_support::{aphex, cdk_command, write_config};
use aphex_tests::moto::{Moto, assets_bucket};
use aphex_tests::parity::{Expected, Outcome, Resource, Snapshot, StackSnapshot, differences, verdict};

/// moto's default account: the CDK CLI deploys environment-agnostic stacks there, and the one app
/// with an explicit environment (`api-gateway-async-lambda-invocation`) names it too.
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const ENV: &str = "parity";

/// What moto 5.2.5 does with CreateStack of these two templates (from its server log): it answers
/// 500 after it has stored the stack, both SDKs retry the 500 (as they should a 5xx), and the retry
/// gets `AlreadyExistsException`. So both tools report that, and the stack stays as moto left it.
const MOTO_500_THEN_RETRY: &str = "AlreadyExistsException";

/// Every app of the fixtures folder, with what the suite expects of it.
const EXPECTED: &[(&str, Expected)] = &[
    (
        "api-cors-lambda-crud-dynamodb",
        Expected::MotoFails {
            needle: MOTO_500_THEN_RETRY,
            reason: "its AWS::ApiGateway::Method reader requires Integration.IntegrationHttpMethod, \
                     which a MOCK integration (the CORS OPTIONS method) does not have: KeyError, 500",
        },
    ),
    ("api-gateway-async-lambda-invocation", Expected::Deploys),
    (
        "api-gateway-parallel-step-functions",
        Expected::MotoFails {
            needle: MOTO_500_THEN_RETRY,
            reason: "Fn::GetAtt of a nested stack's Outputs.X: moto's nested Stack has no \
                     get_cfn_attribute (AttributeError, 500)",
        },
    ),
    ("cognito-api-lambda", Expected::Deploys),
    ("ddb-stream-lambda-sns", Expected::Deploys),
    ("eventbridge-lambda", Expected::Deploys),
    ("http-proxy-apigateway", Expected::Deploys),
    ("lambda-cloudwatch-dashboard", Expected::Deploys),
    ("lambda-cron", Expected::Deploys),
    ("lambda-layer", Expected::Deploys),
    ("lambda-provisioned-concurrency-autoscaling", Expected::Deploys),
    ("stepfunction-external-definition", Expected::Deploys),
    ("stepfunctions-job-poller", Expected::Deploys),
];

/// Values for the parameters that have no default, given to both tools in the syntax they share
/// (`--parameters STACK:NAME=VALUE`).
const PARAMETERS: &[(&str, &str)] = &[("eventbridge-lambda", "EventBridgeLambdaStack:email=ops@example.com")];

/// One app, copied twice (each tool reads its own copy; the CLI writes lock files into the assembly).
struct App {
    name: String,
    expected: Expected,
    /// Stack name → display name (what the config and `--stacks` select by).
    stacks: BTreeMap<String, String>,
    /// `s3://bucket/key` of every file asset the app's manifests publish, for this account/region.
    assets: BTreeSet<String>,
    parameters: Vec<String>,
}

/// One deploy: how it ended and how long it took.
struct Run {
    outcome: Outcome,
    took: Duration,
}

fn examples_dir() -> PathBuf {
    aphex_tests::fixtures_dir().join("cdk/aws-cdk-examples")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let status = Command::new("cp")
        .args(["-a", &format!("{}/.", from.display()), &to.display().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}

/// Reads the app's assembly with the product's reader and lays out both tools' folders under `work`.
fn prepare(name: &str, expected: Expected, work: &Path) -> App {
    let assembly = examples_dir().join(name).join("cdk.out");
    let asm = CloudAssembly::load(&assembly).unwrap_or_else(|e| panic!("{name}: {e}"));
    let resolve = |s: &str| s.replace("${AWS::AccountId}", ACCOUNT).replace("${AWS::Region}", REGION);
    let mut assets = BTreeSet::new();
    for stack in &asm.stacks {
        assert!(
            stack.docker_assets.is_empty(),
            "{name}/{}: a docker image asset; there is no Docker engine here, so the parity suite \
             compares S3 assets only: extend it to ECR images before adding such an app",
            stack.display_name
        );
        for asset in &stack.file_assets {
            for d in &asset.destinations {
                assets.insert(format!("s3://{}/{}", resolve(&d.bucket_name), resolve(&d.object_key)));
            }
        }
    }
    let stacks: BTreeMap<String, String> =
        asm.stacks.iter().map(|s| (s.stack_name.clone(), s.display_name.clone())).collect();
    for tool in ["aphex", "cdk"] {
        copy_dir(&assembly, &work.join(tool).join(name).join("cdk.out"));
    }
    let names: Vec<&str> = stacks.values().map(String::as_str).collect();
    write_config(&work.join("aphex").join(name).join("aphex-config.yaml"), ENV, ACCOUNT, REGION, &names);
    let parameters = PARAMETERS.iter().filter(|(app, _)| *app == name).map(|(_, p)| p.to_string()).collect();
    App { name: name.to_owned(), expected, stacks, assets, parameters }
}

/// The last line of the tool's stderr that says what failed (the CLI prefixes it with `‣`).
fn outcome(out: &Output) -> Outcome {
    if out.status.success() {
        return Outcome::Deployed;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .rev()
        .map(|l| l.trim().trim_start_matches('‣').trim())
        .find(|l| !l.is_empty())
        .unwrap_or("(no error output)");
    Outcome::Failed(line.to_owned())
}

fn deploy_aphex(app: &App, work: &Path, env: &[(String, String)]) -> Run {
    let dir = work.join("aphex").join(&app.name);
    let mut args = vec!["deploy", "--env", ENV, "--assembly", "cdk.out", "--method", "direct"];
    args.extend(["--outputs", "outputs.json"]);
    for p in &app.parameters {
        args.extend(["--parameters", p]);
    }
    let started = Instant::now();
    let out = aphex(&dir, env, &args);
    Run { outcome: outcome(&out), took: started.elapsed() }
}

fn deploy_cdk(app: &App, work: &Path, env: &[(String, String)]) -> Run {
    let dir = work.join("cdk").join(&app.name);
    let mut args = vec!["deploy", "--app", "cdk.out", "--all", "--method=direct"];
    args.extend(["--require-approval", "never", "--progress", "events"]);
    for p in &app.parameters {
        args.extend(["--parameters", p]);
    }
    let started = Instant::now();
    let out = cdk_command(&dir, env, &args).output().expect("run cdk");
    Run { outcome: outcome(&out), took: started.elapsed() }
}

/// `cdk bootstrap` of the suite's account and region, as a user would before either tool deploys.
fn bootstrap(moto: &Moto, work: &Path, tool: &str) {
    let dir = work.join(format!("bootstrap-{tool}"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = cdk_command(&dir, &moto.env(), &["bootstrap", &format!("aws://{ACCOUNT}/{REGION}")])
        .output()
        .expect("run cdk bootstrap");
    assert!(
        out.status.success(),
        "cdk bootstrap ({tool}'s server) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `deploy` on every app with `workers` threads; results in the apps' order.
fn deploy_all(apps: &[App], workers: usize, deploy: impl Fn(&App) -> Run + Sync) -> Vec<Run> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Run>>> = Mutex::new(apps.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some(app) = apps.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let i = apps.iter().position(|a| a.name == app.name).unwrap();
                    let run = deploy(app);
                    results.lock().unwrap()[i] = Some(run);
                }
            });
        }
    });
    results.into_inner().unwrap().into_iter().map(|r| r.expect("every app deployed")).collect()
}

/// What one server holds for the stacks of `apps`, and every object of the assets bucket.
struct Server {
    cf: aws_sdk_cloudformation::Client,
    /// Exporting stack id → export names.
    exports: BTreeMap<String, BTreeSet<String>>,
    /// `s3://bucket/key` of every object of the assets bucket.
    objects: BTreeSet<String>,
}

impl Server {
    async fn read(moto: &Moto) -> Server {
        let config = moto.sdk_config(REGION).await;
        let cf = aws_sdk_cloudformation::Client::new(&config);
        let mut exports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut pages = cf.list_exports().into_paginator().send();
        while let Some(page) = pages.next().await {
            for e in page.expect("ListExports").exports.unwrap_or_default() {
                exports
                    .entry(e.exporting_stack_id.unwrap_or_default())
                    .or_default()
                    .insert(e.name.unwrap_or_default());
            }
        }
        let s3 = aphex::aws::s3_client(&config);
        let bucket = assets_bucket(ACCOUNT, REGION);
        let mut objects = BTreeSet::new();
        let mut pages = s3.list_objects_v2().bucket(&bucket).into_paginator().send();
        while let Some(page) = pages.next().await {
            for o in page.expect("ListObjectsV2 of the assets bucket").contents.unwrap_or_default() {
                objects.insert(format!("s3://{bucket}/{}", o.key.unwrap_or_default()));
            }
        }
        Server { cf, exports, objects }
    }

    async fn snapshot(&self, app: &App) -> Snapshot {
        let mut stacks = BTreeMap::new();
        for name in app.stacks.keys() {
            stacks.insert(name.clone(), self.stack(name).await);
        }
        let assets = self.objects.intersection(&app.assets).cloned().collect();
        Snapshot { stacks, assets }
    }

    async fn stack(&self, name: &str) -> StackSnapshot {
        // A stack the server does not have is an error answer: it shows as status (none).
        let Ok(described) = self.cf.describe_stacks().stack_name(name).send().await else {
            return StackSnapshot::default();
        };
        let Some(stack) = described.stacks.unwrap_or_default().into_iter().next() else {
            return StackSnapshot::default();
        };
        let mut resources = BTreeMap::new();
        let mut unreadable = None;
        let mut pages = self.cf.list_stack_resources().stack_name(name).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    let status = e.raw_response().map(|r| r.status().as_u16().to_string());
                    unreadable =
                        Some(format!("ListStackResources: HTTP {}", status.as_deref().unwrap_or("?")));
                    break;
                }
            };
            for r in page.stack_resource_summaries.unwrap_or_default() {
                resources.insert(
                    r.logical_resource_id.unwrap_or_default(),
                    Resource {
                        kind: r.resource_type.unwrap_or_default(),
                        physical_id: r.physical_resource_id,
                    },
                );
            }
        }
        let outputs = stack
            .outputs
            .unwrap_or_default()
            .into_iter()
            .map(|o| (o.output_key.unwrap_or_default(), o.output_value.unwrap_or_default()))
            .collect();
        let exports = stack.stack_id.and_then(|id| self.exports.get(&id).cloned()).unwrap_or_default();
        StackSnapshot {
            status: stack.stack_status.map(|s| s.as_str().to_owned()),
            resources,
            outputs,
            exports,
            unreadable,
        }
    }
}

/// What a comparison covered, e.g. `CREATE_COMPLETE, 44 resources, 1 outputs, 0 exports, 6 assets`.
fn compared(s: &Snapshot) -> String {
    let statuses: BTreeSet<&str> =
        s.stacks.values().map(|x| x.status.as_deref().unwrap_or("no stack")).collect();
    let count = |f: fn(&StackSnapshot) -> usize| s.stacks.values().map(f).sum::<usize>();
    format!(
        "{}, {} resources, {} outputs, {} exports, {} assets",
        statuses.into_iter().collect::<Vec<_>>().join("/"),
        count(|x| x.resources.len()),
        count(|x| x.outputs.len()),
        count(|x| x.exports.len()),
        s.assets.len()
    )
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

#[test]
fn aphex_deploy_and_cdk_deploy_leave_the_same_stacks_for_every_example_app() {
    let started = Instant::now();
    let names: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(examples_dir())
            .unwrap_or_else(|e| panic!("{}: {e}", examples_dir().display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let listed: Vec<&str> = EXPECTED.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, listed, "every app of the fixtures folder has one line in EXPECTED, in order");

    let work = tempfile::tempdir().unwrap();
    let apps: Vec<App> = EXPECTED.iter().map(|(name, exp)| prepare(name, *exp, work.path())).collect();
    // One server per tool holds every app: no two apps may name the same stack.
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for app in &apps {
        for stack in app.stacks.keys() {
            if let Some(other) = owner.insert(stack, &app.name) {
                panic!("stack {stack} is in {other} and {}: give them a server each", app.name);
            }
        }
    }

    let (aphex_moto, cdk_moto) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            let m = Moto::start();
            bootstrap(&m, work.path(), "aphex");
            m
        });
        let c = s.spawn(|| {
            let m = Moto::start();
            bootstrap(&m, work.path(), "cdk");
            m
        });
        (a.join().unwrap(), c.join().unwrap())
    });
    let bootstrapped = started.elapsed();

    let (aphex_env, cdk_env) = (aphex_moto.env(), cdk_moto.env());
    let (aphex_runs, cdk_runs) = std::thread::scope(|s| {
        let a = s.spawn(|| deploy_all(&apps, 1, |app| deploy_aphex(app, work.path(), &aphex_env)));
        let c = s.spawn(|| deploy_all(&apps, 2, |app| deploy_cdk(app, work.path(), &cdk_env)));
        (a.join().unwrap(), c.join().unwrap())
    });

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (aphex_server, cdk_server) =
        runtime.block_on(async { (Server::read(&aphex_moto).await, Server::read(&cdk_moto).await) });

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for ((app, a), c) in apps.iter().zip(&aphex_runs).zip(&cdk_runs) {
        let (sa, sc) =
            runtime.block_on(async { (aphex_server.snapshot(app).await, cdk_server.snapshot(app).await) });
        let diffs = differences(&sa, &sc);
        let result = verdict(app.expected, &a.outcome, &c.outcome, &diffs);
        let column = match &result {
            Ok(text) => format!("{text} ({})", compared(&sc)),
            Err(problem) => {
                failures.push(format!("{}: {problem}", app.name));
                let one_line: String = problem.replace("\n  ", " ").chars().take(120).collect();
                format!("FAIL: {one_line}")
            }
        };
        rows.push([app.name.clone(), app.stacks.len().to_string(), secs(a.took), secs(c.took), column]);
    }
    // Nothing published outside the apps' manifests, nothing missing: the whole bucket, both servers.
    let whole = |server: &Server| Snapshot { stacks: BTreeMap::new(), assets: server.objects.clone() };
    for d in differences(&whole(&aphex_server), &whole(&cdk_server)) {
        failures.push(format!("assets bucket: {d}"));
    }

    let total = |runs: &[Run]| runs.iter().map(|r| r.took).sum::<Duration>();
    let mut table = String::new();
    let header = ["app", "stacks", "aphex s", "cdk s", "result"];
    let line = |r: &[String; 5]| format!("{:<43} {:>6} {:>7} {:>6}  {}\n", r[0], r[1], r[2], r[3], r[4]);
    table += &line(&header.map(String::from));
    for r in &rows {
        table += &line(r);
    }
    table += &line(&[
        "total (deploys run in parallel)".into(),
        apps.iter().map(|a| a.stacks.len()).sum::<usize>().to_string(),
        secs(total(&aphex_runs)),
        secs(total(&cdk_runs)),
        format!("suite wall time {} s (2 x cdk bootstrap {} s)", secs(started.elapsed()), secs(bootstrapped)),
    ]);
    // Straight to the process's stderr, past the test harness's capture: the table is the figure.
    let _ = write!(
        std::io::stderr().lock(),
        "\nparity of the aws-cdk-examples apps (aphex deploy vs cdk deploy, moto):\n{table}"
    );
    assert!(failures.is_empty(), "parity failures:\n{}", failures.join("\n"));
}
