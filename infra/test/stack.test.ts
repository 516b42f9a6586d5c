// AphexPipelineStack assertions (aws-cdk-lib/assertions under node's test runner), the config loader,
// the placeholder-Lambda handling, and `cdk synth` of the app itself, offline.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import {
  AphexPipelineStack, DELIVERY_LEDGER_PREFIX, METRIC_NAMESPACE, PIPELINE_DETAIL_TYPES, PLATFORM_CONFIGMAP, STACK_STATUSES,
  TEMPLATE_MANAGER_K8S_GROUP, WEBHOOK_K8S_GROUP,
} from '../lib/aphex-pipeline-stack';
import { AphexInfraConfig, DEFAULT_CONFIG, loadConfig } from '../lib/config';
import { readDeployTargets } from '../lib/pipeline-config';
import { FUNCTION_NAMES, inspectLambdaDist, writePlaceholderLambdaDist } from '../lib/lambda-dist';

const INFRA = path.resolve(__dirname, '..');
const dist = writePlaceholderLambdaDist(fs.mkdtempSync(path.join(os.tmpdir(), 'aphex-lambdas-')));

const CONFIG: AphexInfraConfig = {
  ...DEFAULT_CONFIG,
  targetAccounts: ['111111111111', '222222222222'],
  notificationEmails: ['platform-team@example.com'],
  slackWebhookSecretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:aphex/slack-AbCdEf',
  argoUrl: 'https://argo.example.com',
};

// The feature flags of cdk.json, so the tests build the stack as the app does.
const CDK_CONTEXT = JSON.parse(fs.readFileSync(path.join(INFRA, 'cdk.json'), 'utf8')).context;

function synth(config: AphexInfraConfig = CONFIG, guard = false): Template {
  const app = new App({ context: CDK_CONTEXT });
  const stack = new AphexPipelineStack(app, 'AphexPipelineStack', {
    config, lambdaDist: dist, guardPlaceholderLambdas: guard,
    env: { account: '123456789012', region: 'eu-west-1' },
  });
  return Template.fromStack(stack);
}

const template = synth();

test('the artifact bucket is versioned, encrypted, private, TLS-only, with lifecycle rules', () => {
  template.hasResourceProperties('AWS::S3::Bucket', {
    BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
    VersioningConfiguration: { Status: 'Enabled' },
    PublicAccessBlockConfiguration: {
      BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true,
    },
    LifecycleConfiguration: {
      Rules: [Match.objectLike({
        Id: 'artifacts', Status: 'Enabled', ExpirationInDays: 90,
        NoncurrentVersionExpiration: { NoncurrentDays: 30 },
        AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 },
      })],
    },
    LoggingConfiguration: Match.objectLike({ LogFilePrefix: 'artifact-bucket/' }),
  });
  // enforceSSL: every bucket denies requests without TLS.
  const policies = template.findResources('AWS::S3::BucketPolicy');
  assert.equal(Object.keys(policies).length, 2);
  for (const policy of Object.values(policies)) {
    const deny = policy.Properties.PolicyDocument.Statement.find((s: any) => s.Effect === 'Deny');
    assert.deepEqual(deny.Condition, { Bool: { 'aws:SecureTransport': 'false' } });
    assert.equal(deny.Action, 's3:*');
  }
});

test('the four Lambdas run provided.al2023 on arm64 with a log group and retention', () => {
  const functions = template.findResources('AWS::Lambda::Function', { Properties: { Runtime: 'provided.al2023' } });
  assert.equal(Object.keys(functions).length, FUNCTION_NAMES.length);
  for (const fn of Object.values(functions)) {
    assert.deepEqual(fn.Properties.Architectures, ['arm64']);
    assert.equal(fn.Properties.Handler, 'bootstrap');
    assert.ok(fn.Properties.LoggingConfig.LogGroup, 'own log group');
  }
  const retentions = Object.values(template.findResources('AWS::Logs::LogGroup')).map((g) => g.Properties.RetentionInDays);
  assert.ok(retentions.length >= 5 && retentions.every((d) => d === 30), `retentions ${retentions}`);
  template.hasResourceProperties('AWS::Lambda::Function', {
    Runtime: 'provided.al2023',
    Environment: { Variables: Match.objectLike({ APHEX_NAMESPACE: 'argo', APHEX_TEMPLATE: 'aphex-pipeline', APHEX_CLUSTER: 'aphex', APHEX_ARGO_URL: 'https://argo.example.com' }) },
  });
  // Trigger settings come from aphex-config.yaml (the WorkflowTemplate); the infra sets APHEX_BRANCHES
  // only when its own `branches` overrides them.
  const webhookEnv = (t: Template) => Object.values(t.findResources('AWS::Lambda::Function'))
    .map((f) => f.Properties.Environment?.Variables ?? {})
    .find((v) => v.APHEX_WEBHOOK_SECRET_ARN);
  assert.equal(webhookEnv(template).APHEX_BRANCHES, undefined);
  assert.equal(webhookEnv(synth({ ...CONFIG, branches: ['main', 'release/*'] })).APHEX_BRANCHES, 'main,release/*');
  template.hasResourceProperties('AWS::Lambda::Function', {
    Environment: { Variables: Match.objectLike({ APHEX_SLACK_WEBHOOK_SECRET: CONFIG.slackWebhookSecretArn, APHEX_SNS_TOPIC_ARN: Match.anyValue() }) },
  });
});

test('POST /webhook on an HTTP API with throttling and access logs', () => {
  template.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: 'POST /webhook' });
  assert.equal(Object.keys(template.findResources('AWS::ApiGatewayV2::Route')).length, 1, 'one route only');
  template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
    StageName: '$default',
    DefaultRouteSettings: { ThrottlingRateLimit: 20, ThrottlingBurstLimit: 40 },
    AccessLogSettings: { DestinationArn: Match.anyValue(), Format: Match.stringLikeRegexp('requestId') },
  });
  template.hasResourceProperties('AWS::SecretsManager::Secret', {
    GenerateSecretString: { PasswordLength: 48, ExcludePunctuation: true, IncludeSpace: false },
  });
  for (const output of ['WebhookUrl', 'WebhookSecretArn', 'ReadWebhookSecretCommand', 'ArtifactBucketName', 'ArgoUiAddress']) {
    template.hasOutput(output, {});
  }
});

test('the webhook keeps its delivery ledger in the artifact bucket: exactly PutObject and GetObject on the ledger prefix', () => {
  const bucket = Object.keys(template.findResources('AWS::S3::Bucket', { Properties: { LoggingConfiguration: Match.objectLike({ LogFilePrefix: 'artifact-bucket/' }) } }));
  assert.equal(bucket.length, 1, 'one artifact bucket');
  template.hasResourceProperties('AWS::Lambda::Function', {
    Environment: { Variables: Match.objectLike({ APHEX_WEBHOOK_SECRET_ARN: Match.anyValue(), APHEX_LEDGER_BUCKET: { Ref: bucket[0] } }) },
  });
  const statements = Object.values(template.findResources('AWS::IAM::Policy'))
    .flatMap((p) => p.Properties.PolicyDocument.Statement)
    .filter((s: any) => s.Sid === 'DeliveryLedger');
  assert.equal(statements.length, 1);
  assert.deepEqual(statements[0].Action, ['s3:GetObject', 's3:PutObject']);
  assert.deepEqual(statements[0].Resource, { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucket[0], 'Arn'] }, `/${DELIVERY_LEDGER_PREFIX}*`]] });
  assert.equal(DELIVERY_LEDGER_PREFIX, 'aphex/webhook-deliveries/');
});

test('EventBridge rules send pipeline and stack status events to notify, with a dead-letter queue', () => {
  template.hasResourceProperties('AWS::Events::Rule', {
    EventPattern: { source: ['aphex.pipeline'], 'detail-type': PIPELINE_DETAIL_TYPES },
    Targets: [Match.objectLike({ RetryPolicy: { MaximumRetryAttempts: 4, MaximumEventAgeInSeconds: 7200 }, DeadLetterConfig: Match.anyValue() })],
  });
  template.hasResourceProperties('AWS::Events::Rule', {
    EventPattern: {
      source: ['aws.cloudformation'],
      'detail-type': ['CloudFormation Stack Status Change'],
      detail: { 'status-details': { status: STACK_STATUSES } },
    },
  });
  assert.ok(!STACK_STATUSES.some((s) => s.endsWith('IN_PROGRESS')), 'no in-progress status notifies');
  template.resourceCountIs('AWS::SNS::Subscription', 1);
  template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'platform-team@example.com' });
  template.resourceCountIs('AWS::Events::EventBusPolicy', 2);
});

test('EKS: cluster, Argo Helm chart, Pod Identity for workflow pods, access entries for the Lambdas', () => {
  template.resourceCountIs('Custom::AWSCDK-EKS-Cluster', 1);
  template.hasResourceProperties('Custom::AWSCDK-EKS-HelmChart', {
    Chart: 'argo-workflows', Repository: 'https://argoproj.github.io/argo-helm', Namespace: 'argo', CreateNamespace: true,
  });
  template.hasResourceProperties('AWS::EKS::PodIdentityAssociation', { ClusterName: 'aphex', Namespace: 'argo', ServiceAccount: 'aphex-workflow' });
  template.hasResourceProperties('AWS::EKS::Addon', { AddonName: 'eks-pod-identity-agent' });
  template.hasResourceProperties('AWS::EKS::AccessEntry', { KubernetesGroups: [WEBHOOK_K8S_GROUP], Type: 'STANDARD' });
  template.hasResourceProperties('AWS::EKS::AccessEntry', { KubernetesGroups: [TEMPLATE_MANAGER_K8S_GROUP], Type: 'STANDARD' });
  // Workflow pods: the CDK bootstrap roles of exactly the target accounts.
  template.hasResourceProperties('AWS::IAM::Policy', {
    PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({
      Sid: 'AssumeDeployRoles',
      Resource: [
        { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::111111111111:role/cdk-hnb659fds-*']] },
        { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::222222222222:role/cdk-hnb659fds-*']] },
      ],
    })]) },
  });
});

test('workflow pods: email subscriptions on the topic, metrics in our namespace, step logs in the pipeline group, settings in a ConfigMap', () => {
  const statement = (sid: string) => {
    for (const r of Object.values(template.findResources('AWS::IAM::Policy')) as any[]) {
      const found = r.Properties.PolicyDocument.Statement.find((s: any) => s.Sid === sid);
      if (found) return found;
    }
    assert.fail(`no statement ${sid}`);
  };
  assert.deepEqual(statement('ManageEmailSubscriptions').Action, ['sns:ListSubscriptionsByTopic', 'sns:Subscribe', 'sns:Unsubscribe']);
  assert.match(JSON.stringify(statement('ManageEmailSubscriptions').Resource), /NotificationTopic/);
  assert.deepEqual(statement('PublishRunMetrics').Condition, { StringEquals: { 'cloudwatch:namespace': METRIC_NAMESPACE } });
  assert.deepEqual(statement('ShipStepLogs').Action, ['logs:CreateLogStream', 'logs:PutLogEvents']);
  assert.match(JSON.stringify(statement('ShipStepLogs').Resource), /StepLogs/);
  template.hasResourceProperties('AWS::Logs::LogGroup', { LogGroupName: '/aphex/aphex-pipeline', RetentionInDays: 30 });
  const manifests = Object.values(template.findResources('Custom::AWSCDK-EKS-KubernetesResource')) as any[];
  const platform = manifests.map((m) => JSON.stringify(m.Properties.Manifest)).find((m) => m.includes(PLATFORM_CONFIGMAP));
  assert.ok(platform, 'no aphex-platform ConfigMap');
  for (const key of ['APHEX_SNS_TOPIC_ARN', 'APHEX_LOG_GROUP', 'APHEX_ARGO_URL']) assert.ok(platform.includes(key), `${key} missing: ${platform}`);
});

test('an existing cluster is imported by name, not created', () => {
  const imported = synth({ ...CONFIG, createCluster: false, clusterName: 'shared-platform', kubectlRoleArn: 'arn:aws:iam::123456789012:role/platform-admin' });
  imported.resourceCountIs('Custom::AWSCDK-EKS-Cluster', 0);
  imported.resourceCountIs('AWS::EKS::Addon', 0);
  imported.hasResourceProperties('Custom::AWSCDK-EKS-HelmChart', { ClusterName: 'shared-platform', RoleArn: 'arn:aws:iam::123456789012:role/platform-admin' });
  imported.hasResourceProperties('AWS::EKS::AccessEntry', { ClusterName: 'shared-platform' });
});

test('alarms on failed runs, webhook errors and 5xx notify the topic', () => {
  template.hasResourceProperties('AWS::CloudWatch::Alarm', {
    Namespace: 'AphexPipeline', MetricName: 'RunsFailed', Dimensions: [{ Name: 'Pipeline', Value: 'aphex-pipeline' }],
    AlarmActions: [{ Ref: Match.stringLikeRegexp('NotificationTopic') }],
  });
  template.hasResourceProperties('AWS::CloudWatch::Alarm', { Namespace: 'AWS/Lambda', MetricName: 'Errors' });
  template.hasResourceProperties('AWS::CloudWatch::Alarm', { Namespace: 'AWS/ApiGateway', MetricName: '5xx' });
});

/**
 * Statements on Resource "*" that AWS requires, each with the reason. Anything else on "*" fails, and a
 * bare "*" action fails everywhere.
 */
const ALLOWED_STAR_RESOURCE: Array<{ actions: string[]; why: string }> = [
  { actions: ['xray:PutTelemetryRecords', 'xray:PutTraceSegments'], why: 'X-Ray has no resource-level permissions (Lambda active tracing).' },
  { actions: ['cloudwatch:PutMetricData'], why: 'PutMetricData has no resource-level permissions; the statement is limited to the AphexPipeline namespace by condition.' },
  {
    actions: ['ec2:DescribeDhcpOptions', 'ec2:DescribeInstances', 'ec2:DescribeNetworkInterfaces', 'ec2:DescribeRouteTables',
      'ec2:DescribeSecurityGroups', 'ec2:DescribeSubnets', 'ec2:DescribeVpcs', 'iam:CreateServiceLinkedRole', 'iam:GetRole',
      'iam:listAttachedRolePolicies'],
    why: "aws-cdk-lib's EKS cluster creation role: EC2 Describe* have no resource-level permissions; EKS creates its service-linked role on first use.",
  },
];

test('no "*" action anywhere, and "*" resources only where AWS requires them', () => {
  const statements: Array<{ where: string; actions: string[]; resources: unknown[] }> = [];
  const asList = (v: unknown) => (Array.isArray(v) ? v : [v]);
  const collect = (where: string, doc: any, keyPolicy = false) => {
    for (const s of doc?.Statement ?? []) {
      // In a KMS key policy, Resource "*" means the key itself (AWS requires exactly that form); its
      // admin statement for the account root uses "kms:*", the documented default key policy.
      if (keyPolicy) {
        assert.ok(asList(s.Action).every((a: string) => a !== '*'), `${where}: Action "*" in a key policy`);
        continue;
      }
      statements.push({ where, actions: asList(s.Action), resources: asList(s.Resource) });
    }
  };
  for (const [name, r] of Object.entries(template.toJSON().Resources as Record<string, any>)) {
    const p = r.Properties ?? {};
    collect(name, p.PolicyDocument);
    collect(name, p.KeyPolicy, true);
    for (const inline of p.Policies ?? []) collect(name, inline.PolicyDocument);
  }
  assert.ok(statements.length > 20);
  for (const s of statements) {
    assert.ok(!s.actions.includes('*'), `${s.where}: Action "*"`);
    if (!s.resources.includes('*')) continue;
    const allowed = ALLOWED_STAR_RESOURCE.find((a) => s.actions.every((act) => a.actions.includes(act)));
    assert.ok(allowed, `${s.where}: ${s.actions.join(', ')} on Resource "*" is not an explained exception`);
  }
});

test('a placeholder build is guarded: the template refuses every deploy', () => {
  const guarded = synth(CONFIG, true).toJSON();
  const rule = guarded.Rules.RefusePlaceholderLambdas;
  assert.match(rule.Assertions[0].AssertDescription, /cargo lambda build --release --arm64/);
  assert.deepEqual(guarded.Parameters.LambdaBinaries.AllowedValues, ['placeholder']);
  assert.equal(template.toJSON().Rules.RefusePlaceholderLambdas, undefined);
});

test('placeholder binaries are recognised', () => {
  assert.deepEqual(inspectLambdaDist(dist).placeholders, [...FUNCTION_NAMES]);
  assert.equal(inspectLambdaDist(dist).real, false);
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'aphex-empty-'));
  assert.deepEqual(inspectLambdaDist(empty).missing, [...FUNCTION_NAMES]);
  const real = fs.mkdtempSync(path.join(os.tmpdir(), 'aphex-real-'));
  for (const name of FUNCTION_NAMES) {
    fs.mkdirSync(path.join(real, name));
    fs.writeFileSync(path.join(real, name, 'bootstrap'), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]));
  }
  assert.equal(inspectLambdaDist(real).real, true);
});

test('config: file, then context; unknown keys and bad values are errors naming the key', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aphex-config-'));
  fs.writeFileSync(path.join(dir, 'aphex-infra.json'), JSON.stringify({ $comment: 'x', clusterName: 'from-file', nodeCount: 3 }));
  const ctx = (values: Record<string, unknown>) => (k: string) => values[k];
  const c = loadConfig(dir, ctx({ nodeCount: '5', targetAccounts: '111111111111, 222222222222', createCluster: 'true' }));
  assert.equal(c.clusterName, 'from-file');
  assert.equal(c.nodeCount, 5);
  assert.deepEqual(c.targetAccounts, ['111111111111', '222222222222']);
  assert.throws(() => loadConfig(dir, ctx({ targetAccounts: '12345' })), /targetAccounts: "12345" is not a 12-digit account id/);
  assert.throws(() => loadConfig(dir, ctx({ createCluster: 'false' })), /set kubectlRoleArn/);
  fs.writeFileSync(path.join(dir, 'aphex-infra.json'), JSON.stringify({ clustername: 'typo' }));
  assert.throws(() => loadConfig(dir, ctx({})), /unknown setting "clustername"/);
  // The committed example config loads.
  assert.equal(loadConfig(INFRA, ctx({})).pipelineName, 'aphex-pipeline');
});

test('`cdk synth` of the app works offline and guards placeholder binaries', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'aphex-cdk-out-'));
  const env = {
    ...process.env,
    CDK_HOME: fs.mkdtempSync(path.join(os.tmpdir(), 'aphex-cdk-home-')),
    CDK_DISABLE_CLI_TELEMETRY: 'true',
  };
  const cdk = path.join(INFRA, 'node_modules', '.bin', 'cdk');
  const stderr = execFileSync(cdk, ['synth', '--no-notices', '-q', '-o', out, '-c', `lambdaDist=${dist}`], {
    cwd: INFRA, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
  });
  const manifest = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
  assert.equal(manifest.artifacts.AphexPipelineStack.type, 'aws:cloudformation:stack');
  const synthesized = JSON.parse(fs.readFileSync(path.join(out, 'AphexPipelineStack.template.json'), 'utf8'));
  assert.ok(synthesized.Rules.RefusePlaceholderLambdas, 'placeholder build without allowPlaceholderLambdas is guarded');
  assert.equal(typeof stderr, 'string');
});

// The workflow pods' sts:AssumeRole follows aphex-config.yaml: exactly each environment's custom role and
// the bootstrap roles of its account and region under the app's qualifier.
function appRepo(config: string, cdkJson?: object): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aphex-app-'));
  fs.writeFileSync(path.join(dir, 'aphex-config.yaml'), config);
  if (cdkJson) fs.writeFileSync(path.join(dir, 'cdk.json'), JSON.stringify(cdkJson));
  return dir;
}

function assumeStatement(t: Template): unknown[] {
  const policies = Object.values(t.findResources('AWS::IAM::Policy')) as any[];
  const statements = policies.flatMap((p) => p.Properties.PolicyDocument.Statement);
  const found = statements.filter((s) => s.Sid === 'AssumeDeployRoles');
  assert.equal(found.length, 1);
  return found[0].Resource;
}

const partitioned = (rest: string) => ({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, rest]] });
const bootstrapRoles = (q: string, account: string, region: string) =>
  ['deploy-role', 'file-publishing-role', 'image-publishing-role', 'lookup-role']
    .map((kind) => partitioned(`:iam::${account}:role/cdk-${q}-${kind}-${account}-${region}`));

const CUSTOM_CONFIG = `version: "1.0"
build: {commands: [npm ci]}
synth:
  context:
    "@aws-cdk/core:bootstrapQualifier": team42
environments:
  - name: dev
    account: "111111111111"
    region: us-east-1
    stacks: [{name: Api}]
  - name: prod
    account: "333333333333"
    region: eu-west-1
    role: arn:aws:iam::333333333333:role/prod-deployer
    stacks: [{name: Api}]
`;

test('the workflow role may assume exactly the roles of aphex-config.yaml: custom roles, the qualifier\'s bootstrap roles', () => {
  const dir = appRepo(CUSTOM_CONFIG);
  const config = loadConfig(INFRA, (k) => ({ aphexConfig: path.join(dir, 'aphex-config.yaml'), targetAccounts: '111111111111' } as Record<string, unknown>)[k]);
  const resources = assumeStatement(synth({ ...CONFIG, targetAccounts: config.targetAccounts, deployTargets: config.deployTargets }));
  const expected = [
    'arn:aws:iam::333333333333:role/prod-deployer',
    ...bootstrapRoles('team42', '111111111111', 'us-east-1'),
    ...bootstrapRoles('team42', '333333333333', 'eu-west-1'),
  ];
  assert.deepEqual(new Set(resources.map((r) => JSON.stringify(r))), new Set(expected.map((r) => JSON.stringify(r))));
  assert.equal(resources.length, expected.length);
  // No wildcard and no default-qualifier role is left.
  assert.ok(!JSON.stringify(resources).includes('*') && !JSON.stringify(resources).includes('hnb659fds'));

  // A change of the config changes the policy: another role, the qualifier from the app's cdk.json.
  const changed = appRepo(
    CUSTOM_CONFIG.replace(/synth:\n  context:\n.*\n/, '').replace('prod-deployer', 'release-bot'),
    { app: 'node app.js', context: { '@aws-cdk/core:bootstrapQualifier': 'fromcdkjson' } },
  );
  const targets = readDeployTargets(path.join(changed, 'aphex-config.yaml'));
  const after = assumeStatement(synth({ ...CONFIG, targetAccounts: [], deployTargets: targets }));
  assert.ok(after.some((r) => r === 'arn:aws:iam::333333333333:role/release-bot'));
  assert.ok(!JSON.stringify(after).includes('prod-deployer'));
  assert.deepEqual(after.filter((r) => typeof r !== 'string').length, 8);
  assert.ok(JSON.stringify(after).includes('cdk-fromcdkjson-deploy-role-111111111111-us-east-1'));
});

test('the pipeline\'s own stack adds its bootstrap roles; a bad field is named with its file', () => {
  const dir = appRepo(CUSTOM_CONFIG + 'pipeline:\n  stack: {name: AphexPipelineStack, app: infra, account: "444444444444", region: us-west-2}\n');
  const targets = readDeployTargets(path.join(dir, 'aphex-config.yaml'));
  assert.deepEqual(targets.map((t) => [t.source, t.account, t.region, t.qualifier, t.role]), [
    ['dev', '111111111111', 'us-east-1', 'team42', undefined],
    ['prod', '333333333333', 'eu-west-1', 'team42', 'arn:aws:iam::333333333333:role/prod-deployer'],
    ['pipeline.stack', '444444444444', 'us-west-2', 'hnb659fds', undefined],
  ]);
  const bad = appRepo(CUSTOM_CONFIG.replace('role: arn:aws:iam::333333333333:role/prod-deployer', 'role: prod-deployer'));
  assert.throws(() => readDeployTargets(path.join(bad, 'aphex-config.yaml')), /aphex-config\.yaml: environments\[1\]\.role is "prod-deployer"; an IAM role ARN/);
  assert.throws(() => loadConfig(INFRA, (k) => (k === 'aphexConfig' ? '/nonexistent/aphex-config.yaml' : undefined)), /aphexConfig: \/nonexistent\/aphex-config.yaml does not exist/);
});
