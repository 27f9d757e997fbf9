// `node bench/profile-summary.ts <file.cpuprofile> [seconds]`: where a CPU
// profile's time goes, by self time, grouped into areas (GC, idle, our code,
// each dependency, Node internals by module), plus the top functions. With
// `seconds`, only the busiest window of that length counts (a load run's
// window, without start-up, module loading and the idle time around it).
import { readFileSync } from 'node:fs';

type ProfileNode = { id: number; hitCount: number; callFrame: { functionName: string; url: string; lineNumber: number } };
type Profile = { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };

const profile = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const self = new Map<number, number>();
const [from, to] = busiestWindow(Number(process.argv[3] ?? 0) * 1e6);
for (let i = from; i < to; i++) self.set(profile.samples[i]!, (self.get(profile.samples[i]!) ?? 0) + (profile.timeDeltas[i] ?? 0));

/** Sample indexes [from, to) of the window of `us` with the most non-idle time; all samples when `us` is 0. */
function busiestWindow(us: number): [number, number] {
  const n = profile.samples.length;
  if (!us) return [0, n];
  const idle = new Set(profile.nodes.filter((node) => node.callFrame.functionName === '(idle)').map((node) => node.id));
  let best: [number, number] = [0, 0];
  let bestBusy = -1;
  let busy = 0;
  let span = 0;
  let start = 0;
  for (let end = 0; end < n; end++) {
    span += profile.timeDeltas[end] ?? 0;
    if (!idle.has(profile.samples[end]!)) busy += profile.timeDeltas[end] ?? 0;
    while (span > us && start <= end) {
      span -= profile.timeDeltas[start] ?? 0;
      if (!idle.has(profile.samples[start]!)) busy -= profile.timeDeltas[start] ?? 0;
      start++;
    }
    if (busy > bestBusy) [bestBusy, best] = [busy, [start, end + 1]];
  }
  return best;
}
const total = [...self.values()].reduce((a, b) => a + b, 0);

function area(node: ProfileNode): string {
  const { functionName, url } = node.callFrame;
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(program)') return 'program (native, unattributed)';
  const dependency = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dependency) return dependency[1]!;
  if (url.includes('/src/')) return 'src (this project)';
  const internal = /^node:(?:internal\/)?([a-z_]+)/.exec(url);
  if (internal) return `node:${internal[1]}`;
  return url ? 'other' : 'native';
}

const areas = new Map<string, number>();
const functions = new Map<string, number>();
for (const [id, time] of self) {
  const node = byId.get(id)!;
  areas.set(area(node), (areas.get(area(node)) ?? 0) + time);
  const name = `${node.callFrame.functionName || '(anonymous)'} ${node.callFrame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/src\//, 'src/')}:${node.callFrame.lineNumber + 1}`;
  functions.set(name, (functions.get(name) ?? 0) + time);
}
const busy = total - (areas.get('idle') ?? 0);
const pct = (time: number, of: number) => `${((100 * time) / of).toFixed(1).padStart(5)}%`;
const top = (map: Map<string, number>, n: number) => [...map].filter(([name]) => name !== 'idle').sort((a, b) => b[1] - a[1]).slice(0, n);
process.stdout.write(`busy ${(busy / 1e6).toFixed(1)} s of ${(total / 1e6).toFixed(1)} s sampled; shares of busy time:\n`);
for (const [name, time] of top(areas, 20)) process.stdout.write(`  ${pct(time, busy)}  ${name}\n`);
process.stdout.write('top functions (self time):\n');
for (const [name, time] of top(functions, 25)) process.stdout.write(`  ${pct(time, busy)}  ${name}\n`);
