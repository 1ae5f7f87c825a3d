/**
 * npm run bench:rate-model -- [--json FILE]
 *
 * The rate matrix in closed loop, without the stack: the dispatcher's limit learner
 * (`@sluice/rate-limit`) against each of the simulator's accountings (`@sluice/provider-sim`), on a
 * simulated clock (1 ms steps), with a modelled client: calls granted by a GCRA bucket that keeps
 * its level across a change of pace (as the Redis limiter does), answered 105–130 ms later (with
 * noise, as the simulator answers bench:rate's prompts), a 429
 * waited out for its retry-after; each phase measured from one window (at least 2 s) after its
 * start, as bench:rate measures it. It runs the whole matrix in seconds, to try a change of the
 * learner before `bench:rate --matrix` measures it on the real stack; its figures are the
 * model's, not Sluice's.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { createLimiter, type Accounting } from '@sluice/provider-sim';
import { LimitLearner } from '@sluice/rate-limit';
import { matrixAccountings, matrixHeaders, matrixRowMs, matrixScenarios } from './workloads.js';
import { helpIfAsked } from '@sluice/testing';

helpIfAsked(import.meta.url);
const { values: args } = parseArgs({
  options: {
    json: { type: 'string' },
    only: { type: 'string' },
    trace: { type: 'boolean', default: false },
    'jitter-ms': { type: 'string', default: '4' },
  },
});
/** Each call reaches the provider 0 to this many ms after its grant (the event loop, the socket). */
const jitterMs = Number(args['jitter-ms']);

/** A seeded generator, so that a row is the same run after run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x ^= x + Math.imul(x ^ (x >>> 7), 61 | x);
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296;
  };
}

type Headers = (typeof matrixHeaders)[number]['name'];

function run(accounting: Accounting, windowMs: number, scenario: string, headers: Headers) {
  const rpm0 = 2_400;
  const runMs = matrixRowMs(windowMs, false);
  // As bench:rate's simulator answers: 80 ms and 0.5 ms a completion token (50 to 100 of them),
  // with mean-preserving log-normal noise (sigma 0.25).
  const lat = random(11);
  const latencyMs = () => {
    const z = Math.sqrt(-2 * Math.log(1 - lat())) * Math.cos(2 * Math.PI * lat());
    return Math.round((80 + 0.5 * (50 + 50 * lat())) * Math.exp(0.25 * z - 0.25 ** 2 / 2));
  };
  const burstMs = 250;
  const other = scenario === 'other-half' ? 0.5 : 0;
  const changes = scenario === 'halved' || scenario === 'doubled';
  const provider = createLimiter(accounting, rpm0, windowMs, 0);
  let t = 0;
  const learner = new LimitLearner({ configured: {}, now: () => t });
  let sent = 0;
  let admitted = 0;
  let rejected = 0;
  let sustainable = 0;
  let pausedUntil = 0;
  let flowAt = 0;
  let tat = 0;
  let lastInterval = 0;
  const due: Array<{ at: number; answer: () => void }> = [];
  const rnd = random(7);
  const arriving: Array<{ at: number; stamp: ReturnType<LimitLearner['sent']>; settled: boolean }> = [];
  for (; t < runMs; t++) {
    if (t === runMs / 2 && scenario === 'halved') provider.setLimit(t, rpm0 / 2, windowMs);
    if (t === runMs / 2 && scenario === 'doubled') provider.setLimit(t, rpm0 * 2, windowMs);
    if (other) provider.consumeFlow(flowAt, t, other * provider.limitPerMinute);
    flowAt = t;
    due.sort((a, b) => a.at - b.at);
    while (due.length > 0 && due[0]!.at <= t) due.shift()!.answer();
    while (arriving.length > 0 && arriving[0]!.at <= t) {
      const { stamp, settled } = arriving.shift()!;
      const d = provider.take(t, 1);
      const limit = provider.limitPerMinute;
      if (d.allowed) {
        if (settled) admitted++;
        due.push({
          at: t + latencyMs(),
          answer: () => {
            learner.admitted(1);
            if (headers !== '429-only')
              learner.remaining(stamp, {
                requests: d.remaining,
                resetRequestsMs: headers === 'full' ? d.resetMs : undefined,
              });
            if (headers === 'full') learner.learn({ requestsPerMinute: limit }, true);
          },
        });
      } else {
        rejected++;
        if (args.trace)
          console.log(`${t} ms: 429 (retry after ${d.retryAfterMs} ms) at ${learner.limits().requestsPerMinute}/min`);
        due.push({
          at: t + 5,
          answer: () => {
            // OpenAI's 429 message states the limit whatever the headers.
            learner.learn({ requestsPerMinute: limit }, false);
            learner.rateLimited(1, d.retryAfterMs);
            if (headers !== '429-only')
              learner.remaining(stamp, {
                requests: d.remaining,
                resetRequestsMs: headers === 'full' ? d.resetMs : undefined,
              });
            pausedUntil = Math.max(pausedUntil, t + d.retryAfterMs);
          },
        });
      }
    }
    const interval = 60_000 / Math.max(1, learner.limits().requestsPerMinute ?? 60);
    if (args.trace && t % 500 === 0)
      console.log(
        `${t} ms: ${learner.mode} ${Math.round(60_000 / interval)}/min, admitted ${admitted}, 429s ${rejected}, remaining ${provider.peek(t).remaining}`,
      );
    // The Redis limiter's GCRA: the level is kept across a change of pace; the bucket is empty
    // when a pause ends; nothing is asked of it while a pause holds. A learner's hold asks nothing.
    const paused = t < pausedUntil;
    if (pausedUntil > 0 && !paused) tat = Math.max(tat, pausedUntil + burstMs);
    if (!paused && lastInterval && lastInterval !== interval && tat > t)
      tat = Math.max(t, t + burstMs + ((tat - t - burstMs) * interval) / lastInterval);
    if (!paused) lastInterval = interval;
    const capacity = burstMs / interval;
    // As bench:rate measures: each phase from one window (at least 2 s) after its start.
    const settled = t % (changes ? runMs / 2 : runMs) >= Math.max(2_000, windowMs);
    if (settled) sustainable += (provider.limitPerMinute * (1 - other)) / 60_000;
    if (
      paused ||
      learner.holdMs() > 0 ||
      Math.max(tat, t) - t + Math.min(1, capacity) * interval > capacity * interval + 1
    )
      continue;
    tat = Math.max(tat, t) + interval;
    sent++;
    const stamp = learner.sent(1, { requests: sent, tokens: sent });
    arriving.push({ at: t + Math.floor(rnd() * (jitterMs + 1)), stamp, settled });
    arriving.sort((a, b) => a.at - b.at);
  }
  return {
    utilization: Math.round((admitted / sustainable) * 1_000) / 1_000,
    per10k: Math.round((rejected / sent) * 10_000),
  };
}

const rows = [];
for (const a of matrixAccountings)
  for (const scenario of matrixScenarios)
    for (const h of matrixHeaders) {
      if (args.only && !args.only.split(',').includes(`${a.name}/${scenario}/${h.name}`)) continue;
      const r = run(a.accounting, a.windowMs, scenario, h.name);
      rows.push({ row: `${a.name}/${scenario}/${h.name}`, ...r });
      console.log(
        `${`${a.name}/${scenario}/${h.name}`.padEnd(40)} ${r.utilization.toFixed(3)}  ${r.per10k} 429s per 10k`,
      );
    }
if (args.json) {
  mkdirSync(dirname(args.json), { recursive: true });
  writeFileSync(args.json, JSON.stringify({ at: new Date().toISOString(), model: true, rows }, null, 2) + '\n');
}
