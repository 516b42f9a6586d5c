// The service: a Lambda function (a file asset) reading the data stack's table and queue.
import * as path from "node:path";
import * as cdk from "aws-cdk-lib";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as lambda from "aws-cdk-lib/aws-lambda";
import * as sqs from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";

export interface ServiceStackProps extends cdk.StackProps {
  stage: string;
  table: dynamodb.ITable;
  queue: sqs.IQueue;
  greeting: string;
}

export class ServiceStack extends cdk.Stack {
  readonly functionName: string;

  constructor(scope: Construct, id: string, props: ServiceStackProps) {
    super(scope, id, props);
    const fn = new lambda.Function(this, "Handler", {
      runtime: lambda.Runtime.NODEJS_22_X,
      handler: "index.handler",
      code: lambda.Code.fromAsset(path.join(__dirname, "..", "lambda")),
      environment: {
        TABLE_NAME: props.table.tableName,
        QUEUE_URL: props.queue.queueUrl,
        GREETING: props.greeting,
        STAGE: props.stage,
      },
    });
    props.table.grantReadWriteData(fn);
    props.queue.grantSendMessages(fn);
    this.functionName = fn.functionName;
    new cdk.CfnOutput(this, "FunctionName", { value: fn.functionName });
    new cdk.CfnOutput(this, "FunctionArn", { value: fn.functionArn });
  }
}
