// The AphexPipelineStack CDK app. `npx cdk synth` / `npx cdk deploy AphexPipelineStack`.
//
// Lambda binaries: from context `lambdaDist` (default ../target/lambda, where
// `cargo lambda build --release --arm64` writes <name>/bootstrap). When they are missing or are
// placeholders, synth still works (tests, CI, a first look) on generated placeholders, but:
//   - without `-c allowPlaceholderLambdas=true`, the template carries a rule that makes any deploy
//     fail before a resource changes, and synth warns;
//   - with it (tests), the template is the production one with placeholder code: never deploy that.
import * as path from 'node:path';
import { Annotations, App } from 'aws-cdk-lib';
import { AphexPipelineStack } from '../lib/aphex-pipeline-stack';
import { loadConfig } from '../lib/config';
import { inspectLambdaDist, writePlaceholderLambdaDist } from '../lib/lambda-dist';

const app = new App();
const infraDir = path.resolve(__dirname, '..');
const context = (key: string) => app.node.tryGetContext(key);

const config = loadConfig(infraDir, context);
const requested = path.resolve(infraDir, (context('lambdaDist') as string | undefined) ?? '../target/lambda');
const allowPlaceholders = String(context('allowPlaceholderLambdas')) === 'true';

const status = inspectLambdaDist(requested);
let lambdaDist = requested;
let guard = false;
let warning: string | undefined;
if (!status.real) {
  if (status.missing.length > 0) lambdaDist = writePlaceholderLambdaDist(path.join(infraDir, '.placeholder-lambdas'));
  guard = !allowPlaceholders;
  const what = [
    status.missing.length ? `missing: ${status.missing.join(', ')}` : '',
    status.placeholders.length ? `placeholders: ${status.placeholders.join(', ')}` : '',
  ].filter(Boolean).join('; ');
  warning = `Lambda binaries in ${requested} are not real (${what}); synthesized with placeholders. ` +
    (guard
      ? 'Deploying this template fails by design. Run `cargo lambda build --release --arm64` at the repository root first.'
      : 'allowPlaceholderLambdas=true: for tests only, never deploy this assembly.');
}

const stack = new AphexPipelineStack(app, 'AphexPipelineStack', {
  description: 'AphexPipeline: self-modifying CDK deployment pipeline on EKS and Argo Workflows',
  config,
  lambdaDist,
  guardPlaceholderLambdas: guard,
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
if (warning) Annotations.of(stack).addWarningV2('aphex:placeholder-lambdas', warning);
