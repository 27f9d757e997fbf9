// What a server allocates under load, objects already collected included (a
// `--heap-prof` file holds only what is still alive when it is written). Run
// beside a measured window, with the service started with an inspector:
//
//   BENCH_SERVICE_NODE_OPTIONS=--inspect=0 BENCH_REFERENCE_NODE_OPTIONS=--inspect=0 \
//   BENCH_SYSTEMS=limit+check BENCH_CASES=Q2 BENCH_DURING='node bench/heap-sample.ts' npm run bench
//
// It finds the inspector among the ports process $PID listens on, has it sample
// allocations every 1 KiB for HEAP_SECONDS (5), and writes
// bench/results/heap-$SYSTEM-$CASE.heapprofile (Chrome's DevTools open it) with
// the window's length and, for the service, the request log lines written
// meanwhile (bench/results/service.log): `node bench/profile-summary.ts <file>`
// then gives kilobytes a request (for a reference, `--rate <its req/s>`).
// Loopback only; it stops by itself.
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const seconds = Number(process.env.HEAP_SECONDS ?? 5);
const log = path.join(ROOT, 'bench/results/service.log');

type Message = { id?: number; result?: unknown; error?: { message: string } };

const target = await inspectorOf(Number(process.env.PID));
const socket = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((resolve, reject) => {
  socket.addEventListener('open', resolve, { once: true });
  socket.addEventListener('error', reject, { once: true });
});
const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
socket.addEventListener('message', (event) => {
  const message = JSON.parse(String(event.data)) as Message;
  const waiter = message.id === undefined ? undefined : pending.get(message.id);
  if (!waiter) return;
  pending.delete(message.id!);
  if (message.error) waiter.reject(new Error(message.error.message));
  else waiter.resolve(message.result);
});
// The process went away mid-sample: fail instead of waiting for ever.
socket.addEventListener('close', () => {
  for (const waiter of pending.values()) waiter.reject(new Error('the inspector closed'));
  pending.clear();
});
let nextId = 0;
const call = <T>(method: string, params: Record<string, unknown> = {}) =>
  new Promise<T>((resolve, reject) => {
    pending.set(++nextId, { resolve: resolve as (value: unknown) => void, reject });
    socket.send(JSON.stringify({ id: nextId, method, params }));
  });

const logBefore = logSize();
await call('HeapProfiler.enable');
await call('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
const { profile } = await call<{ profile: Record<string, unknown> }>('HeapProfiler.stopSampling');
// The log is written in blocks (4 KiB or once a second): a second's lines more or less, of thousands.
const requests = requestLinesSince(logBefore);
socket.close();
const file = path.join(ROOT, `bench/results/heap-${process.env.SYSTEM ?? 'service'}-${process.env.CASE ?? 'case'}.heapprofile`);
writeFileSync(file, JSON.stringify({ ...profile, seconds, ...(requests > 0 ? { requests } : {}) }));
process.stderr.write(`heap-sample: ${process.env.SYSTEM} ${process.env.CASE}, ${seconds} s${requests > 0 ? `, ~${requests} requests` : ''}: ${path.relative(ROOT, file)}\n`);

function logSize(): number {
  try {
    return statSync(log).size;
  } catch {
    return 0;
  }
}

/** Request lines the service's log gained past `offset` bytes. */
function requestLinesSince(offset: number): number {
  const length = logSize() - offset;
  if (length <= 0) return 0;
  const fd = openSync(log, 'r');
  try {
    const bytes = Buffer.alloc(length);
    readSync(fd, bytes, 0, length, offset);
    return bytes.toString('utf8').split('"msg":"request"').length - 1;
  } finally {
    closeSync(fd);
  }
}

/** The inspector of process `pid`: the one of its listening TCP ports that answers /json/list. */
async function inspectorOf(pid: number): Promise<{ webSocketDebuggerUrl: string }> {
  const sockets = new Set(
    readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
      try {
        return [/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1]].filter((inode) => inode !== undefined);
      } catch {
        return []; // closed meanwhile
      }
    }),
  );
  // /proc/net/tcp: local address (hex ip:port), state 0A = LISTEN, inode in the tenth column.
  const ports = readFileSync(`/proc/${pid}/net/tcp`, 'utf8').split('\n').slice(1).map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields[3] === '0A' && sockets.has(fields[9]!))
    .map((fields) => parseInt(fields[1]!.split(':')[1]!, 16));
  for (const port of ports) {
    try {
      const [target] = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
      if (target?.webSocketDebuggerUrl) return target;
    } catch {
      // not the inspector (the server's own port)
    }
  }
  throw new Error(`process ${pid} has no inspector (start it with --inspect=0): listening on ${ports.join(', ') || 'nothing'}`);
}
