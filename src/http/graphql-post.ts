// The JSON POST transport: every POST /graphql, straight from node:http to the
// request pipeline (http/pipeline.ts), with a bounded body and one write for
// the response. CORS headers for allowed origins; anything but a JSON body is
// refused (415), so no other parser is ever reached.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HeaderSource } from '../tenancy/resolve.ts';
import { allowedOrigin, EXPOSED_HEADERS } from './cors.ts';
import { jsonShapeRefusal } from './json-shape.ts';
import { badRequest, type Pipeline, type PipelineResponse, type RequestState } from './pipeline.ts';

export type PostHandler = (req: IncomingMessage, res: ServerResponse, requestId: string, state: RequestState) => Promise<void>;

export type PostOptions = {
  readonly pipeline: Pipeline;
  readonly maxBodyBytes: number;
  /** Origins a browser may call from (CORS); others get no CORS headers. */
  readonly corsOrigins: readonly string[];
};

export function createPostHandler(options: PostOptions): PostHandler {
  const { pipeline, maxBodyBytes } = options;
  return async (req, res, requestId, state) => {
    const origin = req.headers.origin;
    const cors = allowedOrigin(origin, options.corsOrigins);
    const refused = refusal(req, maxBodyBytes);
    if (refused) {
      req.resume(); // the body is not read: drain it, then close
      return send(res, refused, cors, true);
    }
    let body: Buffer;
    try {
      body = await readBody(req, maxBodyBytes);
    } catch {
      return send(res, refusalResponse(badRequest(`The body is larger than ${maxBodyBytes} bytes`, 413)), cors, true);
    }
    // Before any credentials: JSON.parse of a body of many or deeply nested values holds the event loop for seconds.
    const shape = jsonShapeRefusal(body);
    if (shape) return send(res, refusalResponse(badRequest(shape.message), { limit: shape.limit, max: shape.max }), cors, true);
    let params: unknown;
    try {
      params = JSON.parse(body.toString('utf8'));
    } catch {
      params = MALFORMED;
    }
    const response = params === MALFORMED
      ? refusalResponse(badRequest('The body is not valid JSON'))
      : await pipeline.execute({ params, headers: nodeHeaders(req), readOnly: false, requestId, state });
    send(res, response, cors, false);
  };
}

const MALFORMED = Symbol('malformed');

/** A request refused before its body is read: media type, size, an answer the client cannot accept. */
function refusal(req: IncomingMessage, maxBodyBytes: number): PipelineResponse | undefined {
  if (!/^application\/(json|graphql-response\+json)\s*(;|$)/i.test(req.headers['content-type'] ?? '')) {
    return refusalResponse(badRequest('Send the request as application/json', 415));
  }
  const accept = req.headers.accept;
  if (accept !== undefined && accept !== '' && !/application\/json|application\/graphql-response\+json|\*\/\*|application\/\*/i.test(accept)) {
    return refusalResponse(badRequest('This endpoint answers application/json', 406));
  }
  const length = Number(req.headers['content-length']);
  if (Number.isFinite(length) && length > maxBodyBytes) return refusalResponse(badRequest(`The body is larger than ${maxBodyBytes} bytes`, 413));
  return undefined;
}

function refusalResponse(error: ReturnType<typeof badRequest>, extensions: Record<string, unknown> = {}): PipelineResponse {
  const status = (error.extensions.http as { status: number }).status;
  const body = { errors: [{ message: error.message, extensions: { code: 'BAD_USER_INPUT', ...extensions } }] };
  return { status, headers: {}, json: JSON.stringify(body), errors: [error], data: undefined };
}

/** The body's bytes, or a rejection once it passes `max` bytes (the rest is drained, not kept). */
export function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (over) return;
      if (size <= max) chunks.push(chunk);
      else {
        over = true;
        chunks.length = 0;
        reject(new Error('body too large'));
      }
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function nodeHeaders(req: IncomingMessage): HeaderSource {
  return {
    get: (name) => {
      const value = req.headers[name];
      return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value;
    },
  };
}

export function send(res: ServerResponse, response: PipelineResponse, corsOrigin: string | undefined, close: boolean): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(response.status, {
    ...response.headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(response.json),
    ...(corsOrigin ? { 'access-control-allow-origin': corsOrigin, vary: 'Origin', 'access-control-expose-headers': EXPOSED_HEADERS.join(', ') } : {}),
    ...(close ? { connection: 'close' } : {}),
  });
  res.end(response.json);
}
