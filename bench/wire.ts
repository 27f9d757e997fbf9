// Round trips to PostgreSQL, counted on the wire: a TCP proxy in front of the
// database that counts, per connection, the client's bursts — data from the
// client after the server has answered since the client last wrote. A client
// that pipelines (writes again before any answer) makes one burst; one that
// waits for each answer makes one per wait. Used with sequential requests, so
// bursts per request = round trips per request. Counted apart by the
// connection's application_name (from its startup message): the service's
// request connections ('tenancy') are the request's round trips; its fair-share
// guard's and event hub's connections work beside the requests, off their path.
import net from 'node:net';

export type WireCounter = {
  url: (target: string) => string;
  /** Bursts so far, in all or on the connections of one application_name. */
  bursts: (applicationName?: string) => number;
  close: () => Promise<void>;
};

export async function countRoundTrips(databasePort: number): Promise<WireCounter> {
  let bursts = 0;
  const byName = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const server = net.connect(databasePort, '127.0.0.1');
    sockets.add(client).add(server);
    let answered = true; // the first write of a connection starts a burst
    let name: string | undefined;
    let startup = Buffer.alloc(0); // the client's bytes until its startup message is whole (it may come in pieces)
    let unnamed = 0; // bursts before the name is known: counted under it once it is
    client.on('data', (chunk) => {
      if (name === undefined) {
        startup = Buffer.concat([startup, chunk]);
        name = applicationName(startup);
        if (name !== undefined) {
          byName.set(name, (byName.get(name) ?? 0) + unnamed);
          startup = Buffer.alloc(0);
        }
      }
      if (answered) {
        bursts++;
        if (name === undefined) unnamed++;
        else byName.set(name, (byName.get(name) ?? 0) + 1);
      }
      answered = false;
      server.write(chunk);
    });
    server.on('data', (chunk) => {
      answered = true;
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      server.destroy();
      sockets.delete(client);
      sockets.delete(server);
    };
    client.on('close', end).on('error', end);
    server.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const port = (proxy.address() as net.AddressInfo).port;
  return {
    url: (target) => {
      const url = new URL(target);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    bursts: (applicationName) => (applicationName === undefined ? bursts : (byName.get(applicationName) ?? 0)),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    },
  };
}

/** SSLRequest and GSSENCRequest: 8 bytes a client may send before its startup message. */
const ENCRYPTION_REQUESTS = new Set([80877103, 80877104]);

/**
 * The application_name of a connection's startup message ('' when it gives none), from the bytes its client sent
 * first; undefined until the message is whole.
 */
function applicationName(bytes: Buffer): string | undefined {
  if (bytes.length < 8) return undefined;
  if (ENCRYPTION_REQUESTS.has(bytes.readInt32BE(4))) return applicationName(bytes.subarray(8));
  const length = bytes.readInt32BE(0);
  if (bytes.length < length) return undefined;
  // After the length and the protocol version: name, value, ... each NUL-ended, then one NUL.
  const fields = bytes.subarray(8, length).toString('utf8').split('\0');
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === 'application_name') return fields[i + 1]!;
  return '';
}
