// Request guards: decisions taken after the credentials and tenant selection,
// before any document is executed or connection taken (rate limits, fair share).
import type { TenantSelection } from '../tenancy/principal.ts';

export type GuardRequest = {
  readonly selection: TenantSelection;
  readonly requestId: string;
  /** The request's deadline (epoch ms): a guard that queues the request stops waiting by it. */
  readonly deadline?: number;
};

export type Admission = {
  /** Response headers to add (RateLimit, RateLimit-Policy, ...). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Called exactly once when the request has ended (its transaction committed or rolled back). */
  release?(): void;
};

/** Throws an API error (RATE_LIMITED with extensions.retryAfter in seconds) to refuse the request. */
export type RequestGuard = { admit(request: GuardRequest): Admission | Promise<Admission> };
