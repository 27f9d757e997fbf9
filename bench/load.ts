// Load generator, run as its own process so it does not share the server's
// CPU time: autocannon against one origin, rotating through prepared requests
// (path, body, bearer token) in order, one per request.
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

export type LoadRequest = { path: string; body: string; token: string };
export type LoadSpec = { origin: string; requests: LoadRequest[]; connections: number; seconds: number };
export type LoadResult = { requestsPerSecond: number; p50: number; p99: number; errors: number; non2xx: number; total: number };

// The spec arrives on standard input (too large for an argument).
const spec = JSON.parse(readFileSync(0, 'utf8')) as LoadSpec;
let next = 0;
const result = await autocannon({
  url: spec.origin,
  connections: spec.connections,
  duration: spec.seconds,
  requests: [
    {
      method: 'POST',
      setupRequest: (request) => {
        const { path, body, token } = spec.requests[next++ % spec.requests.length]!;
        return { ...request, path, body, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` } };
      },
    },
  ],
});
process.stdout.write(
  JSON.stringify({
    requestsPerSecond: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    total: result.requests.total,
  } satisfies LoadResult),
);
