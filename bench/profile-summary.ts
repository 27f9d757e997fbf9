// `node bench/profile-summary.ts <file.cpuprofile | file.heapprofile> [seconds] [--callers <name>]`:
// where a CPU profile's time goes, by self time, grouped into areas (GC, idle,
// our code, each dependency, Node internals by module), plus the top
// functions. With `seconds`, only the busiest window of that length counts (a
// load run's window, without start-up, module loading and the idle time around
// it). With `--callers`, the self time of the functions whose name contains
// <name> (writeBuffer, JSON.stringify's caller...) by the chain of three
// callers above them outside Node's own modules: who asks for the work.
// A .heapprofile (bench/heap-sample.ts) is read the same way, bytes allocated in
// place of time: by area, by allocating function, `--callers`; with the request
// count the sampler saved (or `--rate <requests a second>`), in kilobytes a request.
import { readFileSync } from 'node:fs';

type ProfileNode = { id: number; hitCount: number; children?: number[]; callFrame: { functionName: string; url: string; lineNumber: number } };
type Profile = { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
type HeapNode = { id: number; selfSize: number; callFrame: ProfileNode['callFrame']; children: HeapNode[] };
type HeapProfile = { head: HeapNode; seconds?: number; requests?: number };

const args = process.argv.slice(2);
const callersAt = args.indexOf('--callers');
const callersOf = callersAt === -1 ? undefined : args.splice(callersAt, 2)[1];
const rateAt = args.indexOf('--rate'); // a heap profile's requests a second, when it has no count of its own (a reference's)
const rate = rateAt === -1 ? undefined : Number(args.splice(rateAt, 2)[1]);
const read = JSON.parse(readFileSync(args[0]!, 'utf8')) as Profile | HeapProfile;
const heap = 'head' in read ? read : undefined;
const profile: Profile = heap ? { nodes: flatten(heap.head), samples: [], timeDeltas: [] } : (read as Profile);
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const self = new Map<number, number>();
if (heap) {
  const bytes = (node: HeapNode): void => {
    if (node.selfSize) self.set(node.id, node.selfSize);
    node.children.forEach(bytes);
  };
  bytes(heap.head);
} else {
  const [from, to] = busiestWindow(Number(args[1] ?? 0) * 1e6);
  for (let i = from; i < to; i++) self.set(profile.samples[i]!, (self.get(profile.samples[i]!) ?? 0) + (profile.timeDeltas[i] ?? 0));
}

/** A heap profile's tree as a CPU profile's node list (children by id). */
function flatten(head: HeapNode): ProfileNode[] {
  const nodes: ProfileNode[] = [];
  const visit = (node: HeapNode): void => {
    nodes.push({ id: node.id, hitCount: 0, callFrame: node.callFrame, children: node.children.map((child) => child.id) });
    node.children.forEach(visit);
  };
  visit(head);
  return nodes;
}

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

function label(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  return `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/src\//, 'src/')}:${lineNumber + 1}`;
}

const areas = new Map<string, number>();
const functions = new Map<string, number>();
for (const [id, time] of self) {
  const node = byId.get(id)!;
  areas.set(area(node), (areas.get(area(node)) ?? 0) + time);
  const name = label(node);
  functions.set(name, (functions.get(name) ?? 0) + time);
}
const busy = total - (areas.get('idle') ?? 0);
const requests = rate && heap?.seconds ? rate * heap.seconds : heap?.requests;
// A share, and for a heap profile with its request count the kilobytes a request beside it.
const pct = (time: number, of: number) =>
  `${((100 * time) / of).toFixed(1).padStart(5)}%${heap && requests ? ` ${(time / 1024 / requests).toFixed(2).padStart(6)} KB` : ''}`;
const top = (map: Map<string, number>, n: number) => [...map].filter(([name]) => name !== 'idle').sort((a, b) => b[1] - a[1]).slice(0, n);
process.stdout.write(
  heap
    ? `allocated ${(total / 2 ** 20).toFixed(1)} MB${requests ? ` over ~${requests} requests: ${(total / 1024 / requests).toFixed(1)} KB a request` : ''}; shares:\n`
    : `busy ${(busy / 1e6).toFixed(1)} s of ${(total / 1e6).toFixed(1)} s sampled; shares of busy time:\n`,
);
for (const [name, time] of top(areas, 20)) process.stdout.write(`  ${pct(time, busy)}  ${name}\n`);
process.stdout.write(heap ? 'top functions (bytes they allocated):\n' : 'top functions (self time):\n');
for (const [name, time] of top(functions, 25)) process.stdout.write(`  ${pct(time, busy)}  ${name}\n`);

if (callersOf !== undefined) {
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const chains = new Map<string, number>();
  let matched = 0;
  for (const [id, time] of self) {
    if (!byId.get(id)!.callFrame.functionName.includes(callersOf)) continue;
    matched += time;
    const chain: string[] = [];
    for (let up = parent.get(id); up !== undefined && chain.length < 3; up = parent.get(up)) {
      const caller = byId.get(up)!;
      if (!caller.callFrame.url.startsWith('node:')) chain.push(label(caller)); // Node's own layers (streams, net) skipped
    }
    const key = chain.join(' < ');
    chains.set(key, (chains.get(key) ?? 0) + time);
  }
  process.stdout.write(`callers of *${callersOf}* (${pct(matched, busy).trim()} of ${heap ? 'bytes' : 'busy time'}), by share of that:\n`);
  for (const [chain, time] of top(chains, 15)) process.stdout.write(`  ${pct(time, matched)}  ${chain}\n`);
}
