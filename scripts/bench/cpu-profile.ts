/**
 * Summaries of V8 CPU profiles (the inspector's `Profiler.stop` result, or a `.cpuprofile` file that
 * `node --cpu-prof` writes: the same JSON): self time by code area and the top functions. Used by
 * scripts/bench/kafka-throughput.ts (`--profile`) and scripts/bench/kafka-peers.ts (`--profile`).
 */
import type { Profiler } from 'node:inspector';

/** The code area of a function: a kafkajs folder, one of ours, another package, node, or native. */
function area(url: string, fn: string): string {
  if (url === '') return fn.startsWith('(') ? fn : `native ${fn}`;
  const kafkajs = /node_modules\/kafkajs\/src\/([^/]+)/.exec(url);
  if (kafkajs) return `kafkajs/${kafkajs[1]}`;
  const ours = /\/(framework|connectors\/kafka|scripts\/bench)\/(?:([^/]+)\/)?/.exec(url);
  if (ours) return ours[2] && ours[1] !== 'scripts/bench' ? `${ours[1]}/${ours[2]}` : ours[1]!;
  const mod = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (mod) return mod[1]!;
  if (url.startsWith('node:')) return 'node internals';
  return url;
}

/**
 * Lines: the main thread's busy and idle time, then the `areas` areas and the `functions` functions
 * with the most self time, each as a share of the busy time and in milliseconds.
 */
export function summarizeProfile(profile: Profiler.Profile, functions = 15, areas = 14): string[] {
  const self = new Map<number, number>();
  const deltas = profile.timeDeltas ?? [];
  const samples = profile.samples ?? [];
  for (let i = 0; i < samples.length; i++)
    self.set(samples[i]!, (self.get(samples[i]!) ?? 0) + (deltas[i] ?? 0));
  const byArea = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const node of profile.nodes) {
    const us = self.get(node.id) ?? 0;
    if (us === 0) continue;
    const cf = node.callFrame;
    if (cf.functionName === '(idle)') {
      idle += us;
      continue;
    }
    total += us;
    const a = area(cf.url, cf.functionName);
    byArea.set(a, (byArea.get(a) ?? 0) + us);
    const f = `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^.*\/(node_modules|framework|connectors|scripts)\//, '$1/')}:${cf.lineNumber + 1}`;
    byFunction.set(f, (byFunction.get(f) ?? 0) + us);
  }
  const pct = (us: number) => `${((us * 100) / total).toFixed(1)}%`;
  const top = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((x, y) => y[1] - x[1])
      .slice(0, n)
      .map(([k, us]) => `${pct(us)} ${(us / 1000).toFixed(0)} ms ${k}`);
  return [
    `busy ${(total / 1000).toFixed(0)} ms, idle ${(idle / 1000).toFixed(0)} ms (main thread); self time by area:`,
    ...top(byArea, areas).map((l) => `  ${l}`),
    'top functions (self time):',
    ...top(byFunction, functions).map((l) => `  ${l}`),
  ];
}
