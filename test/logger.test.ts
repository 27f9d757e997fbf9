// Credentials never reach the log (src/logger.ts): whatever a caller passes,
// at the top level or one level down, the line carries "[redacted]" instead.
import { Writable } from 'node:stream';
import { expect, it } from 'vitest';
import { createLogger } from '../src/logger.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger('info', { destination: sink }), lines };
}

it('censors credentials at the top level and one level down, and leaves the caller\'s object as it was', () => {
  const { log, lines } = capture();
  const headers = { authorization: 'Bearer eyJ.secret.sig', 'x-api-key': 'tk_live_secret', accept: 'application/json' };
  const fields = { token: 'eyJ.a.b', headers, user: { password: 'hunter2', email: 'a@b.test' }, requestId: 'r1' };
  log.info(fields, 'request');
  const [line] = lines;
  expect(line).toMatchObject({
    msg: 'request',
    requestId: 'r1',
    token: '[redacted]',
    headers: { authorization: '[redacted]', 'x-api-key': '[redacted]', accept: 'application/json' },
    user: { password: '[redacted]', email: 'a@b.test' },
  });
  expect(JSON.stringify(lines)).not.toMatch(/eyJ|tk_live|hunter2/);
  expect(headers.authorization).toBe('Bearer eyJ.secret.sig'); // the caller's object is not changed
  expect(fields.token).toBe('eyJ.a.b');
});

it('passes a line without credentials on unchanged (errors keep their serialisation)', () => {
  const { log, lines } = capture();
  log.warn({ requestId: 'r2', ms: 1.5, err: new Error('boom') }, 'slow');
  expect(lines[0]).toMatchObject({ requestId: 'r2', ms: 1.5, msg: 'slow', err: { message: 'boom', type: 'Error' } });
});
