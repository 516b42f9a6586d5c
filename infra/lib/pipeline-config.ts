// What the workflow pods must be allowed to assume, read from the pipeline's own aphex-config.yaml (setting
// `aphexConfig`): each environment's custom `role`, and the CDK bootstrap roles of each environment's
// account and region under the app's bootstrap qualifier. The qualifier is resolved as `aphex` resolves it
// (shared/src/bootstrap.rs): `synth.context["@aws-cdk/core:bootstrapQualifier"]`, else the app's cdk.json
// `context` (next to aphex-config.yaml), else the CDK default `hnb659fds`. (aphex also reads a synthesized
// assembly; the infra is deployed before any assembly exists, so it cannot.)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';

export const DEFAULT_QUALIFIER = 'hnb659fds';
export const QUALIFIER_CONTEXT_KEY = '@aws-cdk/core:bootstrapQualifier';
/** The roles `cdk bootstrap` creates (its bootstrap template), each `cdk-<q>-<kind>-<account>-<region>`. */
export const BOOTSTRAP_ROLE_KINDS = ['deploy-role', 'file-publishing-role', 'image-publishing-role', 'lookup-role'] as const;

/** One place the pipeline deploys to. */
export interface DeployTarget {
  /** `environments[].name`, or `pipeline.stack` for the pipeline's own stack. */
  readonly source: string;
  readonly account: string;
  readonly region: string;
  /** The bootstrap qualifier of the app deployed there. */
  readonly qualifier: string;
  /** `environments[].role`: assumed instead of the bootstrap roles for the deploy. */
  readonly role?: string;
}

function contextQualifier(cdkJson: string): string | undefined {
  if (!fs.existsSync(cdkJson)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(cdkJson, 'utf8'));
  } catch (e) {
    throw new Error(`${cdkJson}: not valid JSON (${(e as Error).message})`);
  }
  const q = (parsed as { context?: Record<string, unknown> } | null)?.context?.[QUALIFIER_CONTEXT_KEY];
  return typeof q === 'string' ? q : undefined;
}

function field(file: string, where: string, value: unknown, pattern: RegExp, hint: string): string {
  if (typeof value !== 'string' || !pattern.test(value)) {
    throw new Error(`${file}: ${where} is ${JSON.stringify(value)}; ${hint} (run \`aphex validate\` on it)`);
  }
  return value;
}

/**
 * The deploy targets of the aphex-config.yaml at `file`. Throws, naming the file and the field, when a
 * field the policy is built from is missing or malformed (`aphex validate` gives every problem at once).
 */
export function readDeployTargets(file: string): DeployTarget[] {
  if (!fs.existsSync(file)) throw new Error(`aphexConfig: ${file} does not exist`);
  const doc = parse(fs.readFileSync(file, 'utf8')) as Record<string, any> | null;
  const dir = path.dirname(file);
  const synthContext = doc?.synth?.context as Record<string, unknown> | undefined;
  const fromConfig = synthContext?.[QUALIFIER_CONTEXT_KEY];
  const appQualifier = (typeof fromConfig === 'string' ? fromConfig : undefined)
    ?? contextQualifier(path.join(dir, 'cdk.json')) ?? DEFAULT_QUALIFIER;
  const envs = doc?.environments;
  if (!Array.isArray(envs) || envs.length === 0) throw new Error(`${file}: environments is missing or empty`);
  const targets: DeployTarget[] = envs.map((env: Record<string, unknown>, i: number) => {
    const where = `environments[${i}]`;
    const account = field(file, `${where}.account`, env?.account, /^[0-9]{12}$/, 'a quoted 12-digit account id');
    const region = field(file, `${where}.region`, env?.region, /^[a-z]{2}(-[a-z]+)+-[0-9]+$/, 'an AWS region');
    const role = env?.role === undefined
      ? undefined
      : field(file, `${where}.role`, env.role, /^arn:aws[a-z-]*:iam::[0-9]{12}:role\/[\w+=,.@/-]+$/, 'an IAM role ARN');
    return { source: String(env?.name ?? where), account, region, qualifier: appQualifier, role };
  });
  const stack = doc?.pipeline?.stack as Record<string, unknown> | undefined;
  if (stack) {
    const app = typeof stack.app === 'string' ? stack.app : '.';
    targets.push({
      source: 'pipeline.stack',
      account: field(file, 'pipeline.stack.account', stack.account, /^[0-9]{12}$/, 'a quoted 12-digit account id'),
      region: field(file, 'pipeline.stack.region', stack.region, /^[a-z]{2}(-[a-z]+)+-[0-9]+$/, 'an AWS region'),
      qualifier: contextQualifier(path.join(dir, app, 'cdk.json')) ?? DEFAULT_QUALIFIER,
    });
  }
  return targets;
}

/**
 * The role ARNs the workflow pods may assume, sorted and without duplicates: every target's custom role
 * and the bootstrap roles of its account and region; for a `targetAccounts` entry no target covers, its
 * bootstrap roles in any region (`cdk-<q>-*`, q the default). `partition` is put into bootstrap role ARNs
 * (the stack passes `Aws.PARTITION`); custom roles are used exactly as configured.
 */
export function assumableRoles(targets: DeployTarget[], targetAccounts: string[], partition: string): string[] {
  const roles = new Set<string>();
  for (const t of targets) {
    if (t.role) roles.add(t.role);
    for (const kind of BOOTSTRAP_ROLE_KINDS) {
      roles.add(`arn:${partition}:iam::${t.account}:role/cdk-${t.qualifier}-${kind}-${t.account}-${t.region}`);
    }
  }
  const covered = new Set(targets.map((t) => t.account));
  for (const account of targetAccounts) {
    if (!covered.has(account)) roles.add(`arn:${partition}:iam::${account}:role/cdk-${DEFAULT_QUALIFIER}-*`);
  }
  return [...roles].sort();
}
