// Starts gatehouse's listeners for a loaded config and stops them gracefully.
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { type App, buildApp } from './app.js';
import { parseListenAddress } from './config/listen.js';
import type { Config } from './config/options.js';

export interface Running {
  readonly app: App;
  /** Base URL of the main listener (http://127.0.0.1:PORT), or unix:PATH. */
  readonly url: string;
  readonly port: number;
  readonly metricsUrl: string | undefined;
  /** Stops accepting, finishes in-flight requests, then releases the stores. */
  close(): Promise<void>;
  /**
   * Graceful drain (the Kubernetes way): /ready turns 503 at once and answers carry `Connection: close`
   * while requests keep being served for `delayMs` (endpoints controllers and proxies take that long to
   * stop sending here); then the listener closes and in-flight requests get `timeoutMs` to finish before
   * their connections are cut.
   */
  shutdown(o: { readonly delayMs: number; readonly timeoutMs: number }): Promise<void>;
}

async function listen(app: App['server'], address: string): Promise<{ url: string; port: number }> {
  const a = parseListenAddress(address);
  if ('path' in a) {
    await app.listen({ path: a.path });
    return { url: `unix:${a.path}`, port: 0 };
  }
  await app.listen({ host: a.host || '0.0.0.0', port: a.port });
  const info = app.server.address() as AddressInfo;
  const host = info.family === 'IPv6' ? `[${info.address}]` : info.address;
  return {
    url: `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${info.port}`,
    port: info.port,
  };
}

/** Builds the app and listens on --http-address (or --https-address when TLS is configured) and --metrics-address. */
export async function serve(
  config: Config,
  deps: { log?: Logger; version?: string; now?: () => number } = {},
): Promise<Running> {
  const app = await buildApp(config, deps);
  const tls = config.tlsCertFile !== '' || config.tlsKeyFile !== '';
  const main = await listen(app.server, tls ? config.httpsAddress : config.httpAddress);
  const metrics =
    app.metrics && config.metricsAddress ? await listen(app.metrics, config.metricsAddress) : undefined;
  app.log.info({ address: main.url, metrics: metrics?.url }, 'gatehouse listening');
  const close = async () => {
    await app.server.close();
    if (app.metrics) await app.metrics.close();
    await app.close();
  };
  return {
    app,
    url: main.url,
    port: main.port,
    metricsUrl: metrics?.url,
    close,
    async shutdown({ delayMs, timeoutMs }) {
      app.server.beginDrain();
      if (delayMs > 0) await delay(delayMs);
      const cut = setTimeout(() => app.server.server.closeAllConnections(), timeoutMs);
      cut.unref();
      try {
        await close();
      } finally {
        clearTimeout(cut);
      }
    },
  };
}
