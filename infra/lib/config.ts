// AphexPipelineStack's settings: defaults, then `aphex-infra.json` (or the file named by context
// `configFile`), then single context values (`-c clusterName=...`). Documented in README.md.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DeployTarget, readDeployTargets } from './pipeline-config';

export interface AphexInfraConfig {
  /** Name of the pipeline (Argo WorkflowTemplate, mutex prefix, metric dimension). */
  readonly pipelineName: string;
  /** EKS: create a cluster with this name (`createCluster: true`) or import the existing one. */
  readonly clusterName: string;
  readonly createCluster: boolean;
  /** Imported cluster only: a role that kubectl/Helm custom resources assume (must be a cluster admin). */
  readonly kubectlRoleArn?: string;
  /** Created cluster only: worker nodes. */
  readonly nodeInstanceType: string;
  readonly nodeCount: number;
  /** CIDRs allowed to reach the cluster's public endpoint (the Lambdas call it from outside any VPC). */
  readonly publicAccessCidrs: string[];
  /** Kubernetes namespace of Argo and the pipeline, and the workflow pods' service account. */
  readonly argoNamespace: string;
  readonly workflowServiceAccount: string;
  /** The argo-workflows Helm chart version (https://argoproj.github.io/argo-helm). */
  readonly argoChartVersion: string;
  /** Argo UI address when exposed (ingress, load balancer); otherwise the port-forward hint is output. */
  readonly argoUrl?: string;
  /** Accounts the pipeline deploys to: workflow pods may assume their CDK bootstrap roles. */
  readonly targetAccounts: string[];
  /**
   * The pipeline's aphex-config.yaml (path relative to infra/): the workflow pods may assume exactly its
   * environments' custom roles and the bootstrap roles (under the app's qualifier) of each environment's
   * account and region. Read into `deployTargets`.
   */
  readonly aphexConfig?: string;
  /** Derived from `aphexConfig` (not a setting): where the pipeline deploys, as whom. */
  readonly deployTargets: DeployTarget[];
  /** Email addresses subscribed to the notification topic. */
  readonly notificationEmails: string[];
  /** Secrets Manager ARN of the Slack incoming-webhook URL (optional). */
  readonly slackWebhookSecretArn?: string;
  /**
   * Branch globs whose pushes start a run, overriding `pipeline.branches` of aphex-config.yaml (webhook
   * Lambda's APHEX_BRANCHES). Unset by default: the config, through the live WorkflowTemplate, decides.
   */
  readonly branches?: string[];
  /** CloudWatch Logs retention of every log group, in days. */
  readonly logRetentionDays: number;
  /** Days before build artifacts move to Infrequent Access / expire; noncurrent versions expire after noncurrentDays. */
  readonly artifactExpirationDays: number;
  readonly noncurrentVersionExpirationDays: number;
  /** HTTP API throttling of POST /webhook. */
  readonly webhookRateLimit: number;
  readonly webhookBurstLimit: number;
}

export const DEFAULT_CONFIG: AphexInfraConfig = {
  pipelineName: 'aphex-pipeline',
  clusterName: 'aphex',
  createCluster: true,
  nodeInstanceType: 'm7g.large',
  nodeCount: 2,
  publicAccessCidrs: ['0.0.0.0/0'],
  argoNamespace: 'argo',
  workflowServiceAccount: 'aphex-workflow',
  argoChartVersion: '0.45.19',
  targetAccounts: [],
  deployTargets: [],
  notificationEmails: [],
  logRetentionDays: 30,
  artifactExpirationDays: 90,
  noncurrentVersionExpirationDays: 30,
  webhookRateLimit: 20,
  webhookBurstLimit: 40,
};

const LIST_KEYS = ['publicAccessCidrs', 'targetAccounts', 'notificationEmails', 'branches'] as const;
const NUMBER_KEYS = [
  'nodeCount', 'logRetentionDays', 'artifactExpirationDays', 'noncurrentVersionExpirationDays',
  'webhookRateLimit', 'webhookBurstLimit',
] as const;
const BOOLEAN_KEYS = ['createCluster'] as const;

/**
 * Merges the defaults, the config file and context values. `context(key)` reads CDK context (strings
 * from `-c`, or JSON values from cdk.json). Lists in context are comma-separated. Throws on unknown keys
 * and wrong types, naming the key and the source.
 */
export function loadConfig(baseDir: string, context: (key: string) => unknown): AphexInfraConfig {
  const configFile = (context('configFile') as string | undefined) ?? 'aphex-infra.json';
  const filePath = path.resolve(baseDir, configFile);
  let fromFile: Record<string, unknown> = {};
  if (fs.existsSync(filePath)) {
    fromFile = JSON.parse(fs.readFileSync(filePath, 'utf8'));
    delete fromFile.$comment;
  } else if (context('configFile') !== undefined) {
    throw new Error(`config file ${filePath} (context configFile) does not exist`);
  }
  const known = new Set(Object.keys(DEFAULT_CONFIG).filter((k) => k !== 'deployTargets')
    .concat(['kubectlRoleArn', 'argoUrl', 'slackWebhookSecretArn', 'branches', 'aphexConfig']));
  for (const key of Object.keys(fromFile)) {
    if (!known.has(key)) throw new Error(`${filePath}: unknown setting "${key}"; known: ${[...known].join(', ')}`);
  }
  const merged: Record<string, unknown> = { ...DEFAULT_CONFIG, ...fromFile };
  for (const key of known) {
    const raw = context(key);
    if (raw === undefined) continue;
    merged[key] = coerce(key, raw);
  }
  if (typeof merged.aphexConfig === 'string') {
    merged.deployTargets = readDeployTargets(path.resolve(baseDir, merged.aphexConfig));
  }
  const config = merged as unknown as AphexInfraConfig;
  validate(config);
  return config;
}

function coerce(key: string, raw: unknown): unknown {
  if (typeof raw !== 'string') return raw;
  if ((LIST_KEYS as readonly string[]).includes(key)) return raw.split(',').map((s) => s.trim()).filter(Boolean);
  if ((NUMBER_KEYS as readonly string[]).includes(key)) {
    const n = Number(raw);
    if (!Number.isFinite(n)) throw new Error(`context ${key}=${raw}: not a number`);
    return n;
  }
  if ((BOOLEAN_KEYS as readonly string[]).includes(key)) {
    if (raw !== 'true' && raw !== 'false') throw new Error(`context ${key}=${raw}: use true or false`);
    return raw === 'true';
  }
  return raw;
}

function validate(c: AphexInfraConfig): void {
  for (const account of c.targetAccounts) {
    if (!/^[0-9]{12}$/.test(account)) throw new Error(`targetAccounts: "${account}" is not a 12-digit account id`);
  }
  if (!c.createCluster && !c.kubectlRoleArn) {
    throw new Error('createCluster is false: set kubectlRoleArn (a role with cluster-admin access to the imported cluster) so the stack can install Argo with Helm');
  }
  if (c.slackWebhookSecretArn && !c.slackWebhookSecretArn.startsWith('arn:')) {
    throw new Error(`slackWebhookSecretArn: "${c.slackWebhookSecretArn}" is not an ARN (the notify role is granted read access to exactly this secret)`);
  }
}
