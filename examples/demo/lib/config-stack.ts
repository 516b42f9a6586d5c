// Configuration published for other systems: SSM parameters naming the service's function.
import * as cdk from "aws-cdk-lib";
import * as ssm from "aws-cdk-lib/aws-ssm";
import { Construct } from "constructs";

export interface ConfigStackProps extends cdk.StackProps {
  stage: string;
  functionName: string;
}

export class ConfigStack extends cdk.Stack {
  constructor(scope: Construct, id: string, props: ConfigStackProps) {
    super(scope, id, props);
    const param = new ssm.StringParameter(this, "FunctionNameParam", {
      parameterName: `/aphex-demo/${props.stage}/function-name`,
      stringValue: props.functionName,
    });
    new cdk.CfnOutput(this, "ParameterName", { value: param.parameterName });
  }
}
