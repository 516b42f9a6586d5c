//! The steps driven exactly as the rendered WorkflowTemplate calls them: every container's command line,
//! in DAG order, each in a fresh "pod" (its own empty work directory), against moto (STS, S3 artifact
//! bucket, CloudFormation) with a pre-synthesized real CDK assembly as the app's synth output.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aphex::argo::{Template, WorkflowTemplate};
use support::{Moto, aphex_bin, git, write_repo};

const ASSEMBLY: &str = "synth-multi-stack-cross-refs";

fn config(bucket_note: &str) -> String {
    format!(
        r#"version: "1.0"
pipeline:
  name: wf-test
  repository: acme/wf-test
build:
  commands: ["echo built {bucket_note} > build.txt"]
  timeoutMinutes: 1
synth:
  command: "sh synth.sh"
environments:
  - name: dev
    region: us-east-1
    account: "111111111111"
    stacks:
      - name: ProducerStack
      - name: ConsumerStack
        dependsOn: [ProducerStack]
    tests:
      commands:
        - test -n "$APHEX_OUTPUT_PRODUCER_STACK_EXPORTS_OUTPUT_REF_ARTIFACT_BUCKET7410C9EF659B6D66" || (env | grep APHEX_OUTPUT; exit 1)
        - grep -q ProducerStack "$APHEX_OUTPUTS_FILE"
        - cat build.txt
"#
    )
}

/// Runs a DAG template's tasks in order (their `depends` follow listed order), recursing into nested
/// DAGs; returns the stages that ran.
struct Executor<'a> {
    template: &'a WorkflowTemplate,
    params: HashMap<String, String>,
    env: Vec<(String, String)>,
    pods: PathBuf,
    /// Output parameters of finished tasks, by template name.
    outputs: HashMap<String, String>,
    ran: Vec<String>,
}

impl Executor<'_> {
    fn template(&self, name: &str) -> &Template {
        self.template
            .spec
            .templates
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no template {name}"))
    }

    fn substitute(&self, word: &str, pod: &Path) -> String {
        let mut out = word.to_owned();
        for (k, v) in &self.params {
            out = out.replace(&format!("{{{{workflow.parameters.{k}}}}}"), v);
        }
        out = out
            .replace("{{workflow.name}}", &self.params["run-id"])
            .replace("{{workflow.status}}", "Succeeded");
        // The pod's /tmp/aphex is its own: map it into the pod's folder.
        out.replace("/tmp/aphex", &pod.join("tmp-aphex").display().to_string())
    }

    fn run_template(&mut self, name: &str) {
        let template = self.template(name).clone();
        if let Some(dag) = &template.dag {
            for task in &dag.tasks {
                self.run_template(&task.template);
            }
            return;
        }
        if template.suspend.is_some() {
            self.ran.push(format!("{name} (approved)"));
            return;
        }
        let container = template.container.as_ref().expect("a container template");
        let pod = self.pods.join(name);
        std::fs::create_dir_all(pod.join("tmp-aphex")).unwrap();
        // Argo writes a test's input parameter (the deploy's outputs) to the raw artifact's path.
        if let Some(inputs) = &template.inputs {
            for artifact in &inputs.artifacts {
                let deploy = name.replace("test-", "deploy-");
                let data = self.outputs.get(&deploy).cloned().unwrap_or_else(|| "{}".into());
                std::fs::write(self.substitute(&artifact.path, &pod), data).unwrap();
            }
        }
        let argv: Vec<String> =
            container.command.iter().chain(&container.args).map(|w| self.substitute(w, &pod)).collect();
        assert_eq!(argv[0], "aphex", "{argv:?}");
        let out = std::process::Command::new(aphex_bin())
            .args(&argv[1..])
            .envs(container.env.iter().map(|e| (e.name.clone(), e.value.clone())))
            .envs(self.env.iter().cloned())
            .env("APHEX_WORK_DIR", pod.join("work"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{argv:?} failed:\n{stderr}");
        if let Some(outputs) = &template.outputs {
            for p in &outputs.parameters {
                let path = self.substitute(&p.value_from.as_ref().unwrap().path, &pod);
                self.outputs.insert(name.to_owned(), std::fs::read_to_string(path).unwrap());
            }
        }
        self.ran.push(name.to_owned());
        if name == "finalize" {
            self.outputs.insert("finalize-stdout".into(), String::from_utf8_lossy(&out.stdout).into_owned());
        }
    }
}

#[test]
fn every_container_command_of_the_rendered_template_runs_against_moto() {
    let moto = Moto::start();
    moto.bootstrap("111111111111", "us-east-1");
    let bucket = "aphex-artifacts-wf";
    moto.create_bucket(bucket);
    let origin = tempfile::tempdir().unwrap();
    write_repo(origin.path(), &config("ok"), ASSEMBLY);
    let sha = git(origin.path(), &["rev-parse", "HEAD"]);
    let text = std::fs::read_to_string(origin.path().join("aphex-config.yaml")).unwrap();
    let cfg = aphex::config::parse("aphex-config.yaml", &text).unwrap();
    let plan = aphex::plan::build(&cfg);
    let template =
        aphex::argo::render(&plan, &aphex::argo::RenderOptions::for_config(&cfg, Some(sha.clone()))).unwrap();
    let pods = tempfile::tempdir().unwrap();
    let mut exec = Executor {
        template: &template,
        params: HashMap::from([
            ("repo-url".to_owned(), origin.path().display().to_string()),
            ("commit-sha".to_owned(), sha.clone()),
            ("branch".to_owned(), "main".to_owned()),
            ("delivery-id".to_owned(), "d-42".to_owned()),
            ("pusher".to_owned(), "octocat".to_owned()),
            ("run-id".to_owned(), "wf-test-abcde".to_owned()),
        ]),
        env: moto
            .env()
            .into_iter()
            .chain([
                ("APHEX_ARTIFACT_BUCKET".to_owned(), bucket.to_owned()),
                ("APHEX_DEPLOY_METHOD".to_owned(), "direct".to_owned()),
            ])
            .collect(),
        pods: pods.path().to_path_buf(),
        outputs: HashMap::new(),
        ran: Vec::new(),
    };
    let entry = template.spec.entrypoint.clone();
    exec.run_template(&entry);
    let on_exit = template.spec.on_exit.clone();
    exec.run_template(&on_exit);
    // Three pods: validate, build and pipeline share one; the tests run in their deploy's pod.
    assert_eq!(exec.ran, ["prepare", "deploy-dev", "finalize"]);
    assert!(exec.outputs["deploy-dev"].contains("ProducerStack"), "{}", exec.outputs["deploy-dev"]);

    // The artifacts and the run record are in the bucket, where the steps said.
    let keys = moto.list_keys(bucket);
    assert!(
        keys.iter().any(|k| k.starts_with(&format!("wf-test/{sha}/")) && k.ends_with("/artifacts.tar.zst"))
            || keys.iter().any(|k| k.contains(&sha) && k.ends_with("artifacts.tar.zst")),
        "{keys:?}"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&moto.get_object(bucket, "runs/wf-test-abcde/record.json")).unwrap();
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["commitSha"], sha);
    assert_eq!(record["trigger"], "push");
    let stages: Vec<&str> =
        record["stages"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(stages, ["validate", "build", "pipeline", "deploy-dev", "test-dev"]);
    // The run's metrics are in CloudWatch (PutMetricData), not printed.
    assert_eq!(exec.outputs["finalize-stdout"], "");
    let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk_config("us-east-1"));
    let listed = moto.block_on(cw.list_metrics().namespace("AphexPipeline").send()).unwrap();
    let names: std::collections::BTreeSet<&str> =
        listed.metrics().iter().filter_map(|m| m.metric_name()).collect();
    for name in ["RunsStarted", "RunsSucceeded", "RunsFailed", "Deploys", "RunDuration", "StageDuration"] {
        assert!(names.contains(name), "{name} missing: {names:?}");
    }
}
