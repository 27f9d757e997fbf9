// What a subscription field follows, as its schema declares it: the node
// types, the filter a re-read row must pass, and the rows the subscriber can
// see when it starts. A field's `subscribe` returns a LiveSource carrying
// that scope; the subscription engine (engine.ts) drives it, re-reading every
// change in the subscriber's own tenant transaction.
import type { GraphQLContext } from '../graphql/context.ts';

/** A row as its node type loads it (whole). */
export type LiveRow = { readonly id: string } & Readonly<Record<string, unknown>>;

export type LiveScope = {
  /** The node types whose changes this subscription follows ('Session', 'Task', ...). */
  readonly types: readonly string[];
  /** Whether a row, re-read as the subscriber, belongs to this subscription (its filters). */
  matches(type: string, row: LiveRow): boolean;
};

/** `Type:id`: one row of one node type, as the seen sets hold it. */
export const rowKey = (type: string, id: string) => `${type}:${id}`;

/**
 * The source stream of a live field. graphql-js needs an async iterable from
 * `subscribe`; this one is never iterated by graphql-js: the engine reads its
 * scope and the rows the subscriber could see when it subscribed (so it hears
 * of their deletion), and produces the events itself.
 */
export class LiveSource implements AsyncIterable<never> {
  readonly scope: LiveScope;
  /** rowKey()s the subscriber could read when it subscribed. */
  readonly seen: readonly string[];
  /** When the API key it subscribed with expires (ms since the epoch); the stream ends UNAUTHENTICATED then. */
  readonly keyExpiresAt: number | undefined;

  constructor(scope: LiveScope, seen: readonly string[], keyExpiresAt?: number) {
    this.scope = scope;
    this.seen = seen;
    this.keyExpiresAt = keyExpiresAt;
  }

  [Symbol.asyncIterator](): AsyncIterator<never> {
    throw new Error('a live source is driven by the subscription engine (src/subscriptions/engine.ts)');
  }
}

export function isLiveSource(value: unknown): value is LiveSource {
  return value instanceof LiveSource;
}

/** What a subscription field's resolver gets for one event (its root value). */
export type LivePayload = {
  readonly kind: 'CREATED' | 'UPDATED' | 'DELETED' | 'RESYNC';
  /** The node type and key of the row; absent on RESYNC. */
  readonly type?: string;
  readonly id?: string;
  /** The row as the subscriber re-read it; null on DELETED and RESYNC. */
  readonly row: LiveRow | null;
};

/** Starts a live field's subscription in the subscribe-time context (its checks and seen rows), see schema.ts. */
export type LiveStart = (context: GraphQLContext) => Promise<LiveSource>;
