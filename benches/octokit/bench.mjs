// The same work the Rust webhook bench measures, done the Node way: @octokit/webhooks' verify
// (HMAC-SHA256 + timing-safe compare) and JSON.parse, per payload. Usage:
//   node bench.mjs <dir>   (dir holds manifest.json written by the Rust bench: secret, payload files, signatures)
// Prints one JSON line per payload: name, bytes, iterations, mean/p50/p99 in microseconds.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Webhooks } from "@octokit/webhooks";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node bench.mjs <dir with manifest.json>");
  process.exit(2);
}
const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
const webhooks = new Webhooks({ secret: manifest.secret });

async function once(body, signature) {
  if (!(await webhooks.verify(body, signature))) throw new Error("signature did not verify");
  return JSON.parse(body);
}

for (const p of manifest.payloads) {
  const body = readFileSync(join(dir, p.file), "utf8");
  // Warm up the JIT, then time each call on its own so p99 means one delivery.
  const budgetNs = BigInt(Math.round((manifest.seconds ?? 3) * 1e9));
  let warm = 0;
  for (const end = process.hrtime.bigint() + budgetNs / 3n; process.hrtime.bigint() < end; warm++) await once(body, p.signature);
  const times = [];
  for (const end = process.hrtime.bigint() + budgetNs; process.hrtime.bigint() < end; ) {
    const t0 = process.hrtime.bigint();
    await once(body, p.signature);
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  const q = (f) => times[Math.min(times.length - 1, Math.floor(f * times.length))];
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  console.log(JSON.stringify({ name: p.name, bytes: Buffer.byteLength(body), iterations: times.length, mean_us: mean, p50_us: q(0.5), p99_us: q(0.99) }));
}
