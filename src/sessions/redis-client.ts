// The Redis connection (standalone, Sentinel or Cluster) behind a narrow, fail-fast RedisLike (COMPAT.md §7.7).
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { type ConnectionOptions, rootCertificates } from 'node:tls';
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import { GatehouseError } from '../errors.js';

/** Connection settings, as parsed from the `--redis-*` flags (COMPAT.md §7.7). */
export interface RedisClientOptions {
  readonly connectionUrl: string;
  readonly username: string;
  readonly password: string;
  readonly useSentinel: boolean;
  readonly sentinelMasterName: string;
  readonly sentinelPassword: string;
  readonly sentinelConnectionUrls: readonly string[];
  readonly useCluster: boolean;
  readonly clusterConnectionUrls: readonly string[];
  readonly caPath: string;
  readonly insecureSkipTlsVerify: boolean;
  /** Seconds; 0 = client default. ioredis holds one multiplexed connection, so this sets TCP keep-alive. */
  readonly idleTimeoutSeconds: number;
  /** Upper bound for every command, including time spent queued while (re)connecting. */
  readonly commandTimeoutMs: number;
  /** Commands allowed to wait for a connection at once; more are refused at once (default 1000). */
  readonly offlineQueueLimit?: number;
  /** Cap of the reconnect backoff (default 2000 ms). */
  readonly maxBackoffMs?: number;
}

/** The subset of a pino logger the client uses; it never receives credentials. */
export interface RedisLog {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

/** What the session store needs from Redis; small enough to fake in unit tests. */
export interface RedisLike {
  getBuffer(key: string): Promise<Buffer | null>;
  /**
   * SET with PX (`px` > 0) and NX/XX. Resolves true when the value was written, false when NX/XX
   * prevented it.
   */
  set(
    key: string,
    value: Buffer | string,
    opts: { readonly px?: number; readonly nx?: boolean; readonly xx?: boolean },
  ): Promise<boolean>;
  del(key: string): Promise<number>;
  /** Deletes `key` only while it still holds `value` (atomic compare-and-delete); true when deleted. */
  delIfEquals(key: string, value: string): Promise<boolean>;
  /** Sets `key`'s TTL to `ms` only while it still holds `value` (atomic); true when renewed. */
  pexpireIfEquals(key: string, value: string, ms: number): Promise<boolean>;
  pexpire(key: string, ms: number): Promise<boolean>;
  sadd(key: string, member: string): Promise<number>;
  srem(key: string, member: string): Promise<number>;
  scard(key: string): Promise<number>;
  smembers(key: string): Promise<string[]>;
  ping(): Promise<void>;
  quit(): Promise<void>;
  /** ioredis connection status (`ready`, `connecting`, `reconnecting`, `end`, …). */
  status(): string;
}

// KEYS[1] = lock key, ARGV[1] = holder token: only the holder may release (COMPAT.md §7.6).
const DEL_IF_EQUALS =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
// KEYS[1] = lock key, ARGV[1] = holder token, ARGV[2] = TTL ms: only the holder may extend its lock.
const PEXPIRE_IF_EQUALS =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

interface Endpoint {
  readonly host: string;
  readonly port: number;
  readonly username: string;
  readonly password: string;
  readonly db: number;
  readonly tls: boolean;
}

function parseRedisUrl(raw: string, flag: string): Endpoint {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new GatehouseError('ERR_CONFIG_INVALID', `${flag}: not a URL`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new GatehouseError('ERR_CONFIG_INVALID', `${flag}: scheme must be redis:// or rediss://`);
  }
  const dbText = u.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0) {
    throw new GatehouseError('ERR_CONFIG_INVALID', `${flag}: database must be a non-negative integer`);
  }
  return {
    // URL keeps IPv6 literals bracketed; net.connect wants them bare.
    host: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: u.port === '' ? 6379 : Number(u.port),
    username: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    db,
    tls: u.protocol === 'rediss:',
  };
}

/** Reconnect forever: exponential backoff from 50 ms, capped. */
function backoff(capMs: number): (times: number) => number {
  return (times) => Math.min(50 * 2 ** Math.min(times, 16), capMs);
}

/**
 * Creates the Redis client for the session store (COMPAT.md §7.7): `redis://` / `rediss://` with an extra CA or
 * skipped verification, `--redis-username` / `--redis-password` overriding the URL's credentials when non-empty,
 * Sentinel or Cluster mode. Every command is bounded by `commandTimeoutMs` (also while queued during a
 * reconnect); while the connection is known to be down commands fail at once; reconnects go on forever with a
 * capped backoff; the loss and the recovery of the connection are logged once each.
 */
export function createRedisClient(opts: RedisClientOptions, log: RedisLog): RedisLike {
  if (opts.useSentinel && opts.useCluster) {
    throw new GatehouseError('ERR_CONFIG_INVALID', 'redis: sentinel and cluster cannot be used together');
  }
  if (!(opts.commandTimeoutMs > 0)) {
    throw new GatehouseError('ERR_CONFIG_INVALID', 'redis: command timeout must be positive');
  }
  const capMs = opts.maxBackoffMs ?? 2000;
  const offlineLimit = opts.offlineQueueLimit ?? 1000;
  const retry = backoff(capMs);

  let extraCa: string | undefined;
  if (opts.caPath !== '') {
    try {
      extraCa = readFileSync(opts.caPath, 'utf8');
    } catch (e) {
      throw new GatehouseError('ERR_CONFIG_INVALID', `--redis-ca-path: cannot read ${opts.caPath}`, {
        cause: e,
      });
    }
  }
  const tlsFor = (ep: Endpoint): ConnectionOptions | undefined =>
    ep.tls
      ? {
          // SNI carries host names only (RFC 6066); certificates for IPs are still checked against the IP.
          ...(isIP(ep.host) === 0 ? { servername: ep.host } : {}),
          rejectUnauthorized: !opts.insecureSkipTlsVerify,
          // "adds a CA to the pool": keep the default roots and append the configured one.
          ...(extraCa !== undefined ? { ca: [...rootCertificates, extraCa] } : {}),
        }
      : undefined;

  const common: RedisOptions = {
    commandTimeout: opts.commandTimeoutMs,
    // A command stuck on a half-dead socket tears the socket down so the reconnect logic takes over.
    socketTimeout: opts.commandTimeoutMs * 2,
    connectTimeout: Math.max(opts.commandTimeoutMs, 1000),
    // Queued commands are flushed with an error on the first failed reconnect instead of being retried.
    maxRetriesPerRequest: 0,
    enableOfflineQueue: true,
    retryStrategy: retry,
    ...(opts.idleTimeoutSeconds > 0 ? { keepAlive: opts.idleTimeoutSeconds * 1000 } : {}),
  };

  let client: Redis | Cluster;
  if (opts.useCluster) {
    const eps = opts.clusterConnectionUrls.map((u) => parseRedisUrl(u, '--redis-cluster-connection-urls'));
    const first = eps[0];
    if (first === undefined) {
      throw new GatehouseError(
        'ERR_CONFIG_INVALID',
        '--redis-cluster-connection-urls: at least one URL is required',
      );
    }
    const username = opts.username || first.username;
    const password = opts.password || first.password;
    const { retryStrategy: _unused, enableOfflineQueue: _q, ...nodeOptions } = common;
    const clusterOptions: ClusterOptions = {
      clusterRetryStrategy: retry,
      enableOfflineQueue: true,
      redisOptions: {
        ...nodeOptions,
        ...(username ? { username } : {}),
        ...(password ? { password } : {}),
        ...(first.tls ? { tls: tlsFor(first) } : {}),
      },
    };
    client = new Cluster(
      eps.map((e) => ({ host: e.host, port: e.port })),
      clusterOptions,
    );
  } else if (opts.useSentinel) {
    const eps = opts.sentinelConnectionUrls.map((u) => parseRedisUrl(u, '--redis-sentinel-connection-urls'));
    if (eps.length === 0) {
      throw new GatehouseError(
        'ERR_CONFIG_INVALID',
        '--redis-sentinel-connection-urls: at least one URL is required',
      );
    }
    if (opts.sentinelMasterName === '') {
      throw new GatehouseError(
        'ERR_CONFIG_INVALID',
        '--redis-sentinel-master-name is required with sentinel',
      );
    }
    const first = eps[0];
    const sentinelTls = first?.tls ? tlsFor(first) : undefined;
    client = new Redis({
      ...common,
      name: opts.sentinelMasterName,
      sentinels: eps.map((e) => ({ host: e.host, port: e.port })),
      ...(opts.sentinelPassword ? { sentinelPassword: opts.sentinelPassword } : {}),
      ...(opts.username ? { username: opts.username } : {}),
      ...(opts.password ? { password: opts.password } : {}),
      ...(sentinelTls ? { tls: sentinelTls, sentinelTLS: sentinelTls, enableTLSForSentinelMode: true } : {}),
      sentinelRetryStrategy: retry,
      // No failoverDetector: in ioredis 6 its "+switch-master" handler can end a client that is mid-reconnect
      // for good, and its sentinel connections print unhandled errors. A killed master closes our socket, and a
      // demoted one answers READONLY (below); both make us ask the sentinels again.
      reconnectOnError: (e) => e.message.startsWith('READONLY'),
    });
  } else {
    const ep = parseRedisUrl(opts.connectionUrl, '--redis-connection-url');
    const username = opts.username || ep.username;
    const password = opts.password || ep.password;
    const tls = tlsFor(ep);
    client = new Redis({
      ...common,
      host: ep.host,
      port: ep.port,
      db: ep.db,
      ...(username ? { username } : {}),
      ...(password ? { password } : {}),
      ...(tls ? { tls } : {}),
    });
  }

  // One line when the connection goes and one when it is back; ioredis would otherwise print unhandled errors.
  // undefined = not connected yet; the first failure to connect is logged like a loss.
  let up: boolean | undefined;
  let lastError = '';
  let closing = false;
  const markDown = () => {
    if (closing || up === false || (up === undefined && lastError === '')) return;
    up = false;
    log.warn({ event: 'redis_down', error: lastError }, 'redis connection lost');
  };
  client.on('ready', () => {
    if (up === false) log.info({ event: 'redis_up' }, 'redis connection restored');
    up = true;
  });
  client.on('error', (e: unknown) => {
    lastError = e instanceof Error ? e.message : String(e);
    markDown();
  });
  client.on('node error', (e: unknown) => {
    lastError = e instanceof Error ? e.message : String(e);
  });
  client.on('close', markDown);
  client.on('reconnecting', markDown);

  let waiting = 0;
  const isDown = () => {
    const s = client.status;
    return s === 'reconnecting' || s === 'close' || s === 'end' || s === 'disconnecting';
  };
  // Bounds every call (Cluster's own offline queue has no timeout) and refuses work while Redis is known down.
  const run = <T>(op: () => Promise<T>): Promise<T> => {
    if (isDown()) return Promise.reject(new Error(`redis unavailable (${client.status})`));
    const queued = client.status !== 'ready';
    if (queued && waiting >= offlineLimit) return Promise.reject(new Error('redis offline queue full'));
    if (queued) waiting++;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = () => {
        settled = true;
        clearTimeout(timer);
        if (queued) waiting--;
      };
      const timer = setTimeout(() => {
        if (settled) return;
        finish();
        reject(new Error('redis command timed out'));
      }, opts.commandTimeoutMs + 50);
      op().then(
        (v) => {
          if (settled) return;
          finish();
          resolve(v);
        },
        (e: unknown) => {
          if (settled) return;
          finish();
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  };

  // The GETs of one event-loop turn (every request read in one poll) go to Redis as one MGET: one write and
  // one reply instead of one of each per request, and one timer. The answer is the same as separate GETs
  // sent in the same instant. Not for a Cluster (the keys live in different slots), and not while the
  // connection is not ready (then each GET is queued and counted against the offline limit on its own).
  const REFUSED = /^(NOPERM|ERR unknown command)/;
  interface PendingGet {
    readonly key: string;
    readonly resolve: (v: Buffer | null) => void;
    readonly reject: (e: Error) => void;
  }
  let pendingGets: PendingGet[] = [];
  const flushGets = () => {
    const batch = pendingGets;
    pendingGets = [];
    if (batch.length === 1) {
      const only = batch[0] as PendingGet;
      run(() => client.getBuffer(only.key)).then(only.resolve, only.reject);
      return;
    }
    run(() => client.mgetBuffer(batch.map((g) => g.key))).then(
      (values) => {
        for (let i = 0; i < batch.length; i++) (batch[i] as PendingGet).resolve(values[i] ?? null);
      },
      (e: Error) => {
        if (REFUSED.test(e.message)) {
          // An ACL without MGET (or a renamed command): read with GET from now on, this batch included.
          batchGets = false;
          log.warn(
            { event: 'redis_mget_refused', error: e.message },
            'redis refused MGET; reading sessions with GET',
          );
          for (const g of batch) run(() => client.getBuffer(g.key)).then(g.resolve, g.reject);
          return;
        }
        for (const g of batch) g.reject(e);
      },
    );
  };
  let batchGets = !opts.useCluster;

  return {
    getBuffer(key) {
      if (!batchGets || client.status !== 'ready') return run(() => client.getBuffer(key));
      return new Promise<Buffer | null>((resolve, reject) => {
        if (pendingGets.push({ key, resolve, reject }) === 1) setImmediate(flushGets);
      });
    },
    async set(key, value, o) {
      const args: (string | Buffer | number)[] = [key, value];
      if (o.px !== undefined && o.px > 0) args.push('PX', Math.ceil(o.px));
      if (o.nx) args.push('NX');
      if (o.xx) args.push('XX');
      const r = await run(() => client.call('SET', ...args));
      return r !== null;
    },
    del: (key) => run(() => client.del(key)),
    async delIfEquals(key, value) {
      const r = await run(() => client.eval(DEL_IF_EQUALS, 1, key, value));
      return r === 1;
    },
    async pexpireIfEquals(key, value, ms) {
      const r = await run(() => client.eval(PEXPIRE_IF_EQUALS, 1, key, value, Math.ceil(ms)));
      return r === 1;
    },
    async pexpire(key, ms) {
      return (await run(() => client.pexpire(key, Math.ceil(ms)))) === 1;
    },
    sadd: (key, member) => run(() => client.sadd(key, member)),
    srem: (key, member) => run(() => client.srem(key, member)),
    scard: (key) => run(() => client.scard(key)),
    smembers: (key) => run(() => client.smembers(key)),
    async ping() {
      await run(() => client.ping());
    },
    async quit() {
      if (client.status === 'end') return;
      closing = true;
      try {
        await run(() => client.quit());
      } catch {
        // A dead connection cannot say goodbye; drop it instead.
        client.disconnect();
      }
    },
    status: () => client.status,
  };
}
