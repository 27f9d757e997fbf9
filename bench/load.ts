// Load generator, run as its own process so it does not share the server's
// CPU time: autocannon against one origin, rotating through prepared requests
// (path, body, bearer token) in order, one per request. Every answer's body is
// read: a 200 that carries GraphQL errors (or no data) is counted as an error.
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

export type LoadRequest = { path: string; body: string; token: string };
export type LoadSpec = { origin: string; requests: LoadRequest[]; connections: number; seconds: number };
export type LoadResult = {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  /** Failed connections and timeouts. */
  errors: number;
  non2xx: number;
  /** 2xx answers whose body has `errors` or no `data` object. */
  bodyErrors: number;
  /** The first such body (or non-2xx body), cut short: what went wrong. */
  firstError?: string;
  total: number;
};

// The spec arrives on standard input (too large for an argument).
const spec = JSON.parse(readFileSync(0, 'utf8')) as LoadSpec;
let next = 0;
let bodyErrors = 0;
let firstError: string | undefined;
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
      onResponse: (status, body) => {
        // Every system answers `{"data":{...}}` when all went well; an error list or `"data":null` is a failure.
        const ok = status >= 200 && status < 300 && body.startsWith('{"data":{') && !body.includes('"errors":');
        if (ok) return;
        if (status >= 200 && status < 300) bodyErrors++;
        firstError ??= `${status} ${body.slice(0, 300)}`;
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
    bodyErrors,
    ...(firstError ? { firstError } : {}),
    total: result.requests.total,
  } satisfies LoadResult),
);
