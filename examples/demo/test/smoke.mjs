// Post-deploy smoke test of the demo app: reads the stack outputs AphexPipeline hands to tests
// (APHEX_OUTPUT_<STACK>_<KEY> variables, or the JSON file named by APHEX_OUTPUTS_FILE) and checks them.
// It checks shapes and the relations between outputs (the values come from CloudFormation itself).
import { readFileSync } from "node:fs";

const stage = process.env.STAGE ?? process.env.APHEX_ENVIRONMENT ?? "dev";
const account = process.env.APHEX_ACCOUNT;
const fileOutputs = process.env.APHEX_OUTPUTS_FILE ? JSON.parse(readFileSync(process.env.APHEX_OUTPUTS_FILE, "utf8")) : {};

const upperSnake = (s) => s.replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/[^A-Za-z0-9]+/g, "_").toUpperCase();

function output(stack, key) {
  const fromEnv = process.env[`APHEX_OUTPUT_${upperSnake(stack)}_${upperSnake(key)}`];
  const value = fromEnv ?? fileOutputs[stack]?.[key];
  if (!value) throw new Error(`output ${stack}.${key} is missing (neither APHEX_OUTPUT_${upperSnake(stack)}_${upperSnake(key)} nor APHEX_OUTPUTS_FILE has it)`);
  return value;
}

const failures = [];
function check(what, ok) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures.push(what);
}

const table = output("DemoData", "TableName");
const queueUrl = output("DemoData", "QueueUrl");
const fnName = output("DemoService", "FunctionName");
const fnArn = output("DemoService", "FunctionArn");
const param = output("DemoConfig", "ParameterName");

check(`table name ${table}`, /^[A-Za-z0-9_.-]{3,255}$/.test(table));
check(`queue url ${queueUrl}`, /^https?:\/\/\S+\/\d{12}\/\S+$/.test(queueUrl));
check(`function name ${fnName}`, /^[A-Za-z0-9_-]{1,64}$/.test(fnName));
check(`function arn ${fnArn}`, fnArn.startsWith("arn:aws") && fnArn.endsWith(`:function:${fnName}`));
check(`queue and function in the same account`, queueUrl.split("/").at(-2) === fnArn.split(":")[4]);
if (account) check(`function in account ${account}`, fnArn.split(":")[4] === account);
check(`parameter ${param}`, param === `/aphex-demo/${stage}/function-name`);

if (failures.length) {
  console.error(`${failures.length} check(s) failed`);
  process.exit(1);
}
console.log("smoke test passed");
