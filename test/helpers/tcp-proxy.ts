// A TCP proxy on loopback in front of a test database, for faults between a
// pool and its server that the server alone cannot show: the news of a
// connection's end still on its way when the client next writes (a backend
// terminated, a restart, a NAT's or a failover's reset the pool has not read
// yet), and a connection whose path went silent (no answer, no reset).
import net from 'node:net';

export type TcpProxy = {
  /** Where it listens (on 127.0.0.1). */
  readonly port: number;
  /** `url` (a postgres:// URL) through the proxy. */
  url(url: string): string;
  /**
   * From now on, what the server sends on the connections open now reaches their client only once the client writes
   * again, and their end with it: the client finds out that a connection ended only when it uses it.
   */
  holdNews(): void;
  /** The connections open now carry nothing more either way, and never end by themselves (a path gone silent). */
  silence(): void;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
};

type Link = { readonly client: net.Socket; readonly server: net.Socket; held?: Buffer[]; serverEnded: boolean; silent: boolean };

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const links = new Set<Link>();
  let accepted = 0;
  const proxy = net.createServer((client) => {
    accepted++;
    const server = net.connect(targetPort, targetHost);
    const link: Link = { client, server, serverEnded: false, silent: false };
    links.add(link);
    client.on('data', (chunk: Buffer) => {
      if (link.silent) return;
      const held = link.held;
      if (held) {
        // The client writes: what was held arrives now, and the end with it if the server has gone.
        link.held = undefined;
        for (const part of held) client.write(part);
        if (link.serverEnded) return void client.end();
      }
      server.write(chunk);
    });
    server.on('data', (chunk: Buffer) => {
      if (link.silent) return;
      if (link.held) link.held.push(chunk);
      else client.write(chunk);
    });
    server.on('close', () => {
      link.serverEnded = true;
      if (!link.held && !link.silent) client.end();
    });
    client.on('close', () => {
      links.delete(link);
      server.destroy();
    });
    client.on('error', () => {});
    server.on('error', () => {});
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const { port } = proxy.address() as net.AddressInfo;
  return {
    port,
    url: (url) => {
      const parsed = new URL(url);
      parsed.hostname = '127.0.0.1';
      parsed.port = String(port);
      return parsed.toString();
    },
    holdNews: () => {
      for (const link of links) link.held ??= [];
    },
    silence: () => {
      for (const link of links) link.silent = true;
    },
    get accepted() {
      return accepted;
    },
    close: async () => {
      for (const link of links) {
        link.client.destroy();
        link.server.destroy();
      }
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    },
  };
}
