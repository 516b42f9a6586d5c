// Where the Lambda binaries come from: `cargo lambda build --release --arm64` writes
// target/lambda/<name>/bootstrap. That build takes ~8 minutes, so synth (tests, CI, a first look) can
// run on placeholder binaries instead; a placeholder is never deployable (see bin/app.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The Lambda functions of AphexPipelineStack, named as their cargo packages. */
export const FUNCTION_NAMES = ['webhook', 'validate-config', 'generate-template', 'notify'] as const;
export type FunctionName = (typeof FUNCTION_NAMES)[number];

/** First bytes of every placeholder bootstrap, so a placeholder directory is recognised wherever it is. */
export const PLACEHOLDER_MARKER = '#!/bin/sh\n# APHEX PLACEHOLDER LAMBDA';

export interface LambdaDistStatus {
  /** The directory inspected. */
  readonly dir: string;
  /** Functions whose `<dir>/<name>/bootstrap` is missing. */
  readonly missing: FunctionName[];
  /** Functions whose bootstrap is a placeholder. */
  readonly placeholders: FunctionName[];
  /** True when every function has a real binary. */
  readonly real: boolean;
}

/** Inspects `dir` for `<name>/bootstrap` of every function. */
export function inspectLambdaDist(dir: string): LambdaDistStatus {
  const missing: FunctionName[] = [];
  const placeholders: FunctionName[] = [];
  for (const name of FUNCTION_NAMES) {
    const bootstrap = path.join(dir, name, 'bootstrap');
    if (!fs.existsSync(bootstrap)) {
      missing.push(name);
      continue;
    }
    const fd = fs.openSync(bootstrap, 'r');
    const head = Buffer.alloc(PLACEHOLDER_MARKER.length);
    fs.readSync(fd, head, 0, head.length, 0);
    fs.closeSync(fd);
    if (head.toString('utf8') === PLACEHOLDER_MARKER) placeholders.push(name);
  }
  return { dir, missing, placeholders, real: missing.length === 0 && placeholders.length === 0 };
}

/** Writes a placeholder `<dir>/<name>/bootstrap` for every function (idempotent) and returns `dir`. */
export function writePlaceholderLambdaDist(dir: string): string {
  for (const name of FUNCTION_NAMES) {
    fs.mkdirSync(path.join(dir, name), { recursive: true });
    fs.writeFileSync(
      path.join(dir, name, 'bootstrap'),
      `${PLACEHOLDER_MARKER}\n# Not the ${name} function: build it with \`cargo lambda build --release --arm64\`.\nexit 1\n`,
      { mode: 0o755 },
    );
  }
  return dir;
}
