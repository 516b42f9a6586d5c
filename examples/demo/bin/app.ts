#!/usr/bin/env node
// The demo CDK app AphexPipeline deploys: three stacks bound to the environment the deploy synthesizes
// for. `aphex deploy` passes it as context (aphex:account, aphex:region, aphex:environment), because the
// CDK CLI replaces CDK_DEFAULT_ACCOUNT/REGION with the caller's own; plain `cdk synth` falls back to those.
import * as cdk from "aws-cdk-lib";
import { DataStack } from "../lib/data-stack";
import { ServiceStack } from "../lib/service-stack";
import { ConfigStack } from "../lib/config-stack";

const app = new cdk.App();
const env = {
  account: app.node.tryGetContext("aphex:account") ?? process.env.CDK_DEFAULT_ACCOUNT,
  region: app.node.tryGetContext("aphex:region") ?? process.env.CDK_DEFAULT_REGION,
};
const stage: string = app.node.tryGetContext("aphex:environment") ?? process.env.STAGE ?? "dev";
const greeting: string = app.node.tryGetContext("demo:greeting") ?? "hello";

const data = new DataStack(app, "DemoData", { env, stage });
const service = new ServiceStack(app, "DemoService", { env, stage, table: data.table, queue: data.queue, greeting });
new ConfigStack(app, "DemoConfig", { env, stage, functionName: service.functionName });

// moto (the tests' AWS) cannot read the Tags map of AWS::SSM::Parameter; real AWS can. The stack tags
// still reach those parameters on AWS, which propagates stack tags to supported resources.
const tagProps = { excludeResourceTypes: ["AWS::SSM::Parameter"] };
cdk.Tags.of(app).add("app", "aphex-demo", tagProps);
cdk.Tags.of(app).add("stage", stage, tagProps);
const release = app.node.tryGetContext("release") ?? process.env.DEMO_RELEASE;
if (release) cdk.Tags.of(app).add("release", String(release), tagProps);
