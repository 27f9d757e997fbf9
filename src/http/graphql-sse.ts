// GraphQL over Server-Sent Events (the graphql-sse protocol's "distinct
// connections" mode, which Yoga and its GraphiQL speak): a GET or POST to
// /graphql whose Accept prefers text/event-stream (eventStreamRank), or
// accepts it for an operation only a stream carries (a subscription). The request goes through the one
// pipeline (http/pipeline.ts) like any other; a subscription answers a stream
// of `next` events and a `complete`, any other operation one `next`. A
// refusal of the whole request (credentials, tenant, limits) is a JSON body
// with its status, as on the JSON transport.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { apiError } from '../errors.ts';
import { allowedOrigin, EXPOSED_HEADERS } from './cors.ts';
import { BodyTooLargeError, credentialedBody, nodeHeaders, send } from './graphql-post.ts';
import { jsonShapeRefusal } from './json-shape.ts';
import { badRequest, type Credentialed, type Pipeline, type PipelineResponse, type RequestState } from './pipeline.ts';

export type SseOptions = {
  readonly pipeline: Pipeline;
  readonly maxBodyBytes: number;
  readonly corsOrigins: readonly string[];
  /** A comment line this often keeps proxies from closing an idle stream. */
  readonly keepAliveMs?: number;
};

/**
 * `negotiated`: the client accepts a stream without preferring it (eventStreamRank `accepts`): answered JSON unless the
 * operation streams (a subscription), which is told through it (true) before the stream's head is written.
 */
export type SseHandler = (req: IncomingMessage, res: ServerResponse, requestId: string, state: RequestState, negotiated?: (streams: boolean) => void) => Promise<void>;

const KEEP_ALIVE_MS = 12_000;
/** A stream whose client stopped reading is cut this long after the service gave up on it. */
const STALLED_MS = 1_000;

/**
 * How an Accept header ranks an event stream against JSON (RFC 9110 12.5.1, as the GraphQL-over-HTTP spec asks: the
 * highest-weighted type the server offers): `prefers` when it names text/event-stream and weighs it above every JSON type
 * (or accepts no JSON at all), `accepts` when it names it but weighs JSON as high (a subscription, which only a stream
 * carries, streams; anything else answers JSON, as Yoga answers anything but a stream), undefined when it does not name
 * it or weighs it 0. Only a client naming the stream gets one (`*\/*` and `text/*` do not). A weight that is no qvalue
 * makes its range unacceptable (as the `negotiator` package reads one); a type's weight is its most specific range's.
 * Bounded: the first ACCEPT_RANGES ranges are read.
 */
export function eventStreamRank(accept: string | undefined): 'prefers' | 'accepts' | undefined {
  if (accept === undefined || !EVENT_STREAM.test(accept)) return undefined; // every request: the one test it cost before
  let stream = -1;
  // application/json, application/graphql-response+json: each weighed by its most specific range (exact 2, application/* 1, */* 0).
  const json = [-1, -1];
  const specificity = [-1, -1];
  for (const range of accept.split(',', ACCEPT_RANGES)) {
    const parameters = range.split(';', ACCEPT_PARAMETERS);
    const type = parameters[0]!.trim().toLowerCase();
    let weight = 1;
    for (let i = 1; i < parameters.length; i++) {
      const equals = parameters[i]!.indexOf('=');
      if (equals < 0 || parameters[i]!.slice(0, equals).trim().toLowerCase() !== 'q') continue;
      const value = parameters[i]!.slice(equals + 1).trim();
      weight = QVALUE.test(value) ? Number(value) : -1;
      break; // the first weight counts; what follows it are extensions
    }
    if (weight < 0) continue;
    if (type === 'text/event-stream') stream = Math.max(stream, weight);
    else
      for (let i = 0; i < 2; i++) {
        const rank = type === JSON_TYPES[i] ? 2 : type === 'application/*' ? 1 : type === '*/*' ? 0 : -1;
        if (rank > specificity[i]!) [specificity[i], json[i]] = [rank, weight];
        else if (rank >= 0 && rank === specificity[i]) json[i] = Math.max(json[i]!, weight);
      }
  }
  if (stream <= 0) return undefined;
  return stream > Math.max(json[0]!, json[1]!) ? 'prefers' : 'accepts';
}

const EVENT_STREAM = /text\/event-stream/i;
const JSON_TYPES = ['application/json', 'application/graphql-response+json'];
/** RFC 9110's qvalue: 0 to 1, three decimals at most. */
const QVALUE = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/;
/** Ranges of an Accept header read, and parameters of a range: a header of thousands is no client's. */
const ACCEPT_RANGES = 32;
const ACCEPT_PARAMETERS = 16;

export function createSseHandler(options: SseOptions): SseHandler {
  const { pipeline, maxBodyBytes } = options;
  const keepAliveMs = options.keepAliveMs ?? KEEP_ALIVE_MS;
  return async (req, res, requestId, state, negotiated) => {
    // Listened for from the start: a client gone while its subscription was being started (the
    // pipeline's checks and first read) must end that subscription too, not leave it open.
    const gone = new Promise<void>((resolve) => res.once('close', resolve));
    const cors = allowedOrigin(req.headers.origin, options.corsOrigins);
    let params: unknown;
    let credentials: Credentialed | undefined; // a body's: checked before it is read
    try {
      if (req.method === 'GET') params = fromQueryString(req.url ?? '');
      else ({ params, credentials } = await fromBody(req, pipeline, maxBodyBytes));
    } catch (error) {
      req.resume();
      const badInput = (error as ReturnType<typeof badRequest>).extensions?.code === 'BAD_USER_INPUT';
      return send(res, badInput ? refusal(error as ReturnType<typeof badRequest>) : pipeline.refuse(error, state), cors, true);
    }
    const response = await pipeline.execute({ params, headers: nodeHeaders(req), readOnly: req.method === 'GET', requestId, state, streams: true, credentials });
    if (!response.stream && (negotiated || response.status !== 200)) return send(res, response, cors, false);
    if (negotiated) {
      // Negotiated into a stream: its connection's last answer, as a stream asked for is (server.ts).
      negotiated(true);
      res.setHeader('connection', 'close');
    }
    res.writeHead(200, {
      ...response.headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no', // nginx: pass events on as they come
      ...(cors ? { 'access-control-allow-origin': cors, vary: 'Origin', 'access-control-expose-headers': EXPOSED_HEADERS.join(', ') } : {}),
    });
    res.flushHeaders();
    if (!response.stream) {
      res.end(`event: next\ndata: ${response.json}\n\nevent: complete\ndata:\n\n`);
      return;
    }
    const stream = response.stream;
    void gone.then(() => stream.return?.());
    const keepAlive = setInterval(() => res.write(':\n\n'), keepAliveMs);
    try {
      for await (const json of stream) {
        if (res.destroyed) break;
        if (!res.write(`event: next\ndata: ${json}\n\n`)) await drained(res, gone, () => stream.endedWith !== undefined);
      }
      if (!res.destroyed) res.end('event: complete\ndata:\n\n');
    } finally {
      clearInterval(keepAlive);
    }
  };
}

/**
 * Waits until the client has read what was written. A client that stopped
 * reading holds the stream only until the service ends it (its buffer full,
 * access ended): then the connection is cut.
 */
async function drained(res: ServerResponse, gone: Promise<void>, ended: () => boolean): Promise<void> {
  const drain = new Promise<void>((resolve) => res.once('drain', resolve));
  for (;;) {
    const timer = new Promise<'tick'>((resolve) => setTimeout(() => resolve('tick'), STALLED_MS).unref());
    if ((await Promise.race([drain, gone, timer])) !== 'tick') return;
    if (ended()) {
      res.destroy();
      return;
    }
  }
}

/** GET /graphql?query=…&variables=…&operationName=…: the GraphQL-over-HTTP parameters. */
function fromQueryString(url: string): unknown {
  const search = new URL(url, 'http://localhost').searchParams;
  const variables = search.get('variables');
  const extensions = search.get('extensions');
  return {
    query: search.get('query') ?? undefined,
    variables: variables === null || variables === '' ? undefined : parseJson(variables, 'variables'),
    operationName: search.get('operationName') || undefined,
    ...(extensions ? { extensions: parseJson(extensions, 'extensions') } : {}),
  };
}

/** The credentials (before the body is read, as on the JSON transport: graphql-post.ts) and the body's parameters. */
async function fromBody(req: IncomingMessage, pipeline: Pipeline, maxBodyBytes: number): Promise<{ params: unknown; credentials: Credentialed }> {
  if (!/^application\/(json|graphql-response\+json)\s*(;|$)/i.test(req.headers['content-type'] ?? '')) throw badRequest('Send the request as application/json', 415);
  const length = Number(req.headers['content-length']);
  if (Number.isFinite(length) && length > maxBodyBytes) throw badRequest(`The body is larger than ${maxBodyBytes} bytes`, 413);
  let read: Awaited<ReturnType<typeof credentialedBody>>;
  try {
    read = await credentialedBody(req, pipeline, maxBodyBytes, true);
  } catch (error) {
    throw error instanceof BodyTooLargeError ? badRequest(`The body is larger than ${maxBodyBytes} bytes`, 413) : error;
  }
  const { credentials, body } = read;
  // Before JSON.parse, as on the JSON transport: a body of many or deeply nested values is refused unparsed.
  const shape = jsonShapeRefusal(body);
  if (shape) throw apiError('BAD_USER_INPUT', shape.message, { http: { status: 400 }, limit: shape.limit, max: shape.max });
  return { params: parseJson(body.toString('utf8'), 'The body'), credentials };
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw badRequest(`${what} is not valid JSON`);
  }
}

function refusal(error: ReturnType<typeof badRequest>): PipelineResponse {
  const status = error.extensions.http?.status ?? 400;
  const { limit, max } = error.extensions;
  const body = { errors: [{ message: error.message, extensions: { code: 'BAD_USER_INPUT', ...(limit === undefined ? {} : { limit, max }) } }] };
  return { status, headers: {}, json: JSON.stringify(body), errors: [error], data: undefined };
}
