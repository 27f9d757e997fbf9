// Round trips to PostgreSQL, counted on the wire: a TCP proxy in front of the
// database that counts, per connection, the client's bursts — data from the
// client after the server has answered since the client last wrote. A client
// that pipelines (writes again before any answer) makes one burst; one that
// waits for each answer makes one per wait. Used with sequential requests, so
// bursts per request = round trips per request.
import net from 'node:net';

export type WireCounter = { url: (target: string) => string; bursts: () => number; close: () => Promise<void> };

export async function countRoundTrips(databasePort: number): Promise<WireCounter> {
  let bursts = 0;
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const server = net.connect(databasePort, '127.0.0.1');
    sockets.add(client).add(server);
    let answered = true; // the first write of a connection starts a burst
    client.on('data', (chunk) => {
      if (answered) bursts++;
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
    bursts: () => bursts,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    },
  };
}
