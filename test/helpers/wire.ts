import net from 'node:net';

// eslint-disable-next-line @typescript-eslint/unbound-method -- restored as the prototype's method, called with its own `this`
const original = net.Socket.prototype.write;

/**
 * What `run` returns, and the socket writes this process made to `port` (a database's) meanwhile: round trips,
 * since the pool waits for each write's answer before the next. Counts every socket of the process: run nothing
 * else against that database at the same time.
 */
export async function writesTo<T>(port: number, run: () => Promise<T>): Promise<{ value: T; writes: number }> {
  let writes = 0;
  net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
    if (this.remotePort === port) writes++;
    return (original as (...values: unknown[]) => boolean).apply(this, args);
  };
  try {
    return { value: await run(), writes };
  } finally {
    net.Socket.prototype.write = original;
  }
}
