// Load generator, run as its own process so it does not share the server's
// CPU time: autocannon against one URL, rotating bearer tokens per request.
import autocannon from 'autocannon';

type LoadSpec = { url: string; tokens: string[]; body: string; connections: number; seconds: number };

const spec = JSON.parse(process.argv[2]!) as LoadSpec;
let next = 0;
const result = await autocannon({
  url: spec.url,
  connections: spec.connections,
  duration: spec.seconds,
  requests: [
    {
      method: 'POST',
      setupRequest: (request) => ({
        ...request,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${spec.tokens[next++ % spec.tokens.length]}` },
        body: spec.body,
      }),
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
  }),
);
