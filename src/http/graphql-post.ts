// The JSON POST transport: every POST /graphql, straight from node:http to the
// request pipeline (http/pipeline.ts), with a bounded body and one write for
// the response. CORS headers for allowed origins; anything but a JSON body is
// refused (415), so no other parser is ever reached.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HeaderSource } from '../tenancy/resolve.ts';
import { allowedOrigin, EXPOSED_HEADERS } from './cors.ts';
import { jsonShapeRefusal } from './json-shape.ts';
import { badRequest, type Credentialed, type Pipeline, type PipelineResponse, type RequestState } from './pipeline.ts';

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
      return send(res, refused, cors, true, requestId);
    }
    let credentials: Credentialed;
    let body: Buffer;
    try {
      ({ credentials, body } = await credentialedBody(req, pipeline, maxBodyBytes, false));
    } catch (error) {
      req.resume(); // the rest is not read: drain it, then close
      const tooLarge = error instanceof BodyTooLargeError;
      return send(res, tooLarge ? refusalResponse(badRequest(`The body is larger than ${maxBodyBytes} bytes`, 413)) : pipeline.refuse(error, state), cors, true, requestId);
    }
    // Before JSON.parse: a body of many or deeply nested values holds the event loop for seconds.
    const shape = jsonShapeRefusal(body);
    if (shape) return send(res, refusalResponse(badRequest(shape.message), { limit: shape.limit, max: shape.max }), cors, true, requestId);
    let params: unknown;
    try {
      params = JSON.parse(body.toString('utf8'));
    } catch {
      params = MALFORMED;
    }
    const response = params === MALFORMED
      ? refusalResponse(badRequest('The body is not valid JSON'))
      : await pipeline.execute({ params, headers: nodeHeaders(req), readOnly: false, requestId, state, credentials });
    send(res, response, cors, false, requestId);
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

/**
 * Of a body sent with credentials only the database can confirm (an API key:
 * anyone can make up one of the right form), at most this much is read until
 * it has; like a WebSocket message before connection_ack (graphql-ws.ts).
 */
export const UNCONFIRMED_BODY_BYTES = 64 * 1024;

export class BodyTooLargeError extends Error {}

/**
 * The credentials, then the body: credentials missing, malformed, expired or
 * forged (all the headers tell) are refused with the body unread, and a body
 * with an API key is read past UNCONFIRMED_BODY_BYTES only once the database
 * knows the key. Rejects with the coded refusal, or BodyTooLargeError.
 */
export async function credentialedBody(req: IncomingMessage, pipeline: Pipeline, maxBodyBytes: number, streams: boolean): Promise<{ credentials: Credentialed; body: Buffer }> {
  const credentials = await pipeline.credentials(nodeHeaders(req), streams);
  const gate = credentials.selection.credentials.kind === 'apiKey' ? { bytes: UNCONFIRMED_BODY_BYTES, open: () => pipeline.confirm(credentials.selection) } : undefined;
  return { credentials, body: await readBody(req, maxBodyBytes, gate) };
}

/** Past `bytes`, reading pauses until `open` resolves; its rejection is the body's. */
export type BodyGate = { readonly bytes: number; open(): Promise<void> };

/** The body's bytes, or a rejection once it passes `max` bytes (BodyTooLargeError; the rest is drained, not kept). */
export function readBody(req: IncomingMessage, max: number, gate?: BodyGate): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    let closed = gate;
    let opening: Promise<void> | undefined;
    const fail = (error: unknown) => {
      over = true;
      chunks.length = 0;
      reject(error instanceof Error ? error : new Error(String(error)));
    };
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (over) return;
      if (size > max) return fail(new BodyTooLargeError('body too large'));
      chunks.push(chunk);
      if (closed && size > closed.bytes) {
        req.pause();
        opening = closed.open().then(() => void req.resume(), fail);
        closed = undefined;
      }
    });
    const done = () => {
      if (!over) resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    };
    req.on('end', () => (opening ? void opening.then(done) : done()));
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

/** `requestId`: sent as x-request-id with the other headers, when no earlier setHeader did (one writeHead: Node's fast case). */
export function send(res: ServerResponse, response: PipelineResponse, corsOrigin: string | undefined, close: boolean, requestId?: string): void {
  if (res.headersSent || res.destroyed) return;
  // One headers object, filled in place (no spread objects: this runs for every answer).
  const headers: Record<string, string | number> = Object.assign({}, response.headers);
  if (requestId !== undefined) headers['x-request-id'] = requestId;
  headers['content-type'] = 'application/json; charset=utf-8';
  headers['content-length'] = Buffer.byteLength(response.json);
  if (corsOrigin) {
    headers['access-control-allow-origin'] = corsOrigin;
    headers.vary = 'Origin';
    headers['access-control-expose-headers'] = EXPOSED_HEADER_LIST;
  }
  if (close) headers.connection = 'close';
  res.writeHead(response.status, headers);
  res.end(response.json);
}

const EXPOSED_HEADER_LIST = EXPOSED_HEADERS.join(', ');
