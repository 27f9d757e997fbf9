// Small facts about this machine's test servers.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * Where the kernel takes ports for outgoing connections and for listen(0)
 * (Linux: net.ipv4.ip_local_port_range, 32768-60999 by default).
 */
function ephemeralLow(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return low !== undefined && Number.isInteger(low) && low > 12_000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

const BELOW = ephemeralLow();

/** Whether a server can listen on loopback at `port` now. */
function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

/**
 * A TCP port free on loopback right now, below the ephemeral range: the
 * kernel never hands it to an outgoing connection, so it stays free between
 * this probe and the server's bind, and while a server on it is stopped and
 * started again (the fault tests' restarts). A port the kernel chose
 * (listen(0)) could be taken meanwhile as some connection's local port, and
 * the server's start then failed with "Address already in use".
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * (BELOW - 10_000));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port found between 10000 and ${BELOW}`);
}

/** The same connection string, naming another database. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}
