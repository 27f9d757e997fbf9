// Steady client load for fault tests: a few clients sending one request after
// another, each answer recorded (status, code, reason, Retry-After, time), and
// a /ready poller that notes when readiness changes.

export type Answer = {
  readonly at: number;
  readonly ms: number;
  readonly status: number;
  readonly code: string | undefined;
  readonly reason: string | undefined;
  readonly retryAfter: string | null;
  /** The HTTP exchange itself failed (reset, refused): never expected. */
  readonly failed?: string;
};

export type Load = {
  readonly answers: Answer[];
  /** Stops the clients and waits for their last answers. */
  stop(): Promise<Answer[]>;
};

type Send = () => Promise<Response>;

export function startLoad(send: Send, clients: number): Load {
  const answers: Answer[] = [];
  let running = true;
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      answers.push(await timed(send));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  });
  return {
    answers,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return answers;
    },
  };
}

export async function timed(send: Send): Promise<Answer> {
  const at = Date.now();
  try {
    const response = await send();
    const text = await response.text();
    let code: string | undefined;
    let reason: string | undefined;
    try {
      const body = JSON.parse(text) as { errors?: { extensions?: { code?: string; reason?: string } }[] };
      code = body.errors?.[0]?.extensions?.code;
      reason = body.errors?.[0]?.extensions?.reason;
    } catch {
      code = 'NOT_JSON';
    }
    return { at, ms: Date.now() - at, status: response.status, code, reason, retryAfter: response.headers.get('retry-after') };
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code;
    return { at, ms: Date.now() - at, status: 0, code: undefined, reason: undefined, retryAfter: null, failed: cause ?? String(error) };
  }
}

export type Readiness = {
  /** [time sent, status] of every answer. */
  readonly samples: [number, number][];
  /** [time, status] at every change, starting with the first answer. */
  changes(): [number, number][];
  /** The slowest /ready answer seen, in ms. */
  slowest(): number;
  /** When /ready first answered `status` at or after `since`. */
  firstAt(status: number, since: number): number | undefined;
  stop(): Promise<void>;
};

export function pollReadiness(origin: string, everyMs = 50): Readiness {
  const samples: [number, number][] = [];
  let slowest = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = Date.now();
      const status = await fetch(`${origin}/ready`).then((response) => (void response.text(), response.status), () => 0);
      slowest = Math.max(slowest, Date.now() - started);
      samples.push([started, status]);
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  return {
    samples,
    changes: () => samples.filter(([, status], i) => i === 0 || samples[i - 1]![1] !== status),
    slowest: () => slowest,
    firstAt: (status, since) => samples.find(([at, seen]) => seen === status && at >= since)?.[0],
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

/** Counts of answers by "status code/reason", for assertions and reports. */
export function tally(answers: readonly Answer[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const answer of answers) {
    const key = answer.failed ? `failed: ${answer.failed}` : `${answer.status}${answer.code ? ` ${answer.code}` : ''}${answer.reason ? `/${answer.reason}` : ''}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}
