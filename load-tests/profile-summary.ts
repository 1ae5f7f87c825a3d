/**
 * npm run profile:summary -- FILE.cpuprofile [--top N] [--json FILE]
 *
 * Where a role's CPU went, from a V8 CPU profile (node --cpu-prof; bench:e2e writes one per role
 * with SLUICE_BENCH_PROFILE=role:DIR): self time by area (each npm package, Node's internals, the
 * garbage collector, idle, Sluice's own workspaces) and the top functions by self time. Shares
 * are of busy time (idle left out).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '15' }, json: { type: 'string' } },
});
const file = positionals[0];
if (!file) {
  console.error('usage: npm run profile:summary -- FILE.cpuprofile [--top N] [--json FILE]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map<number, number>();
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i]!;
  selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
}

/** The area a frame belongs to: a package, a workspace of Sluice, Node itself, or V8's own. */
function area(n: ProfileNode): string {
  const { url, functionName } = n.callFrame;
  if (!url) {
    if (functionName === '(idle)') return '(idle)';
    if (functionName === '(garbage collector)') return '(garbage collector)';
    if (functionName === '(program)') return '(program)';
    return '(native)';
  }
  if (url.startsWith('node:'))
    return `node:${url.slice(5).split('/')[0] === 'internal' ? url.slice(5).split('/')[1] : url.slice(5)}`;
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  const ws = /\/(libs|stream-processors|ingest-api|load-tests|dev|schemas)\/([^/]+)/.exec(url);
  if (ws) return `sluice:${ws[1]}/${ws[2]}`;
  return url;
}

// Inclusive: a sample counts for every area on its stack (time spent in a package and below it).
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const inclusive = new Map<string, number>();
for (const [id, us] of selfUs) {
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) seen.add(area(byId.get(at)!));
  if (seen.has('(idle)')) continue;
  // Packages and Sluice's own code: Node's internals sit under everything (the event loop).
  for (const a of seen)
    if (!a.startsWith('(') && !a.startsWith('node:') && !a.startsWith('['))
      inclusive.set(a, (inclusive.get(a) ?? 0) + us);
}
const areas = new Map<string, number>();
const functions = new Map<string, number>();
let total = 0;
let idle = 0;
for (const [id, us] of selfUs) {
  const n = byId.get(id)!;
  const a = area(n);
  total += us;
  if (a === '(idle)') {
    idle += us;
    continue;
  }
  areas.set(a, (areas.get(a) ?? 0) + us);
  const f = `${n.callFrame.functionName || '(anonymous)'} ${a}:${n.callFrame.lineNumber + 1}`;
  functions.set(f, (functions.get(f) ?? 0) + us);
}
const busy = total - idle;
const top = Number(values.top);
const rows = (m: Map<string, number>) =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, us]) => ({ name, ms: Math.round(us / 1_000), share: Number((us / busy).toFixed(3)) }));
const summary = {
  file,
  seconds: Number((total / 1e6).toFixed(1)),
  busySeconds: Number((busy / 1e6).toFixed(1)),
  areas: rows(areas),
  inclusiveAreas: rows(inclusive),
  functions: rows(functions),
};
console.log(`${file}: ${summary.busySeconds} s busy of ${summary.seconds} s`);
console.log('by area (self time, share of busy):');
for (const r of summary.areas) console.log(`  ${(r.share * 100).toFixed(1).padStart(5)} %  ${r.ms} ms  ${r.name}`);
console.log('by area, with what it calls (inclusive):');
for (const r of summary.inclusiveAreas)
  console.log(`  ${(r.share * 100).toFixed(1).padStart(5)} %  ${r.ms} ms  ${r.name}`);
console.log('by function:');
for (const r of summary.functions) console.log(`  ${(r.share * 100).toFixed(1).padStart(5)} %  ${r.ms} ms  ${r.name}`);
if (values.json) writeFileSync(values.json, `${JSON.stringify(summary, null, 2)}\n`);
