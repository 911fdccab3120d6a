// The Fastify server: one method-agnostic route that dispatches on the raw path (COMPAT.md §1.1), and in
// front of it the fast path that answers GET/HEAD on the auth path with the same route code (fastAuth)
// from node:http's own request and response objects. Every request comes in through node:http's public
// API; the fast path only skips Fastify's routing, hooks and reply object.
import { randomUUID } from 'node:crypto';
import {
  createServer as createHttp,
  type IncomingHttpHeaders,
  type IncomingMessage,
  METHODS,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttps } from 'node:https';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Reason } from '../authz/decide.js';
import { parseCookieHeader } from '../cookies/chunks.js';
import type { RequestFacts } from '../redirect/request.js';
import { RawReply, type ReplyLike } from './reply.js';
import { type AuthLine, authLogWriter, type RequestLine, requestLogWriter } from './request-log.js';
import { createRoutes } from './routes.js';
import type { Services } from './services.js';
import { plain } from './util.js';

/** Per-request state the routes fill in for the log line and metrics. */
export interface RequestState {
  reason: Reason | undefined;
  user: string | undefined;
  started: number;
  /** Counted in metrics (everything but health and readiness checks). */
  measured: boolean;
  /** Written to the request log. */
  logged: boolean;
  id: string | undefined;
  /** The status of the auth decision, when one was made (for the auth-decision log line). */
  decision: number | undefined;
  /** The services this request started on (a reload may swap them mid-request). */
  kit: {
    readonly svc: Services;
    readonly o: Services['opts'];
    readonly idHeader: string;
    readonly obs: Services['observer'];
    readonly logLine: (line: RequestLine) => void;
    /** Set when decisions get their own log line (--auth-logging without --request-logging). */
    readonly authLine: ((line: AuthLine) => void) | undefined;
  };
}

declare module 'fastify' {
  interface FastifyRequest {
    gh: RequestState;
  }
  interface FastifyInstance {
    /** Replaces the services behind every route (configuration reload); the listener stays. */
    swapServices(next: Services): void;
    /**
     * Starts a graceful drain (SIGTERM): /ready answers 503 from now on, and every answer carries
     * `Connection: close` so that pooled keep-alive connections end after their next request instead of
     * being reset when the listener closes.
     */
    beginDrain(): void;
  }
}

/** What the auth check needs of one request (served by Fastify or by the fast path). */
export interface CheckContext<R extends ReplyLike = ReplyLike> {
  readonly reply: R;
  readonly facts: RequestFacts;
  readonly path: string;
  readonly rawQuery: string;
  readonly cookies: ReadonlyMap<string, string>;
  readonly state: RequestState;
  requestId(): string;
}

/** Everything a Fastify route handler gets about one request. */
export interface RouteContext extends CheckContext<FastifyReply> {
  readonly req: FastifyRequest;
}

export type Route = (c: RouteContext) => Promise<FastifyReply> | FastifyReply;

/** Request headers up to 64 KiB: split sessions plus the app's own cookies exceed Node's 16 KiB default. */
export const MAX_HEADER_SIZE = 64 * 1024;

export interface TlsOptions {
  readonly key: Buffer;
  readonly cert: Buffer;
  readonly minVersion?: 'TLSv1.2' | 'TLSv1.3';
}

/** `fastPath: false` sends GET/HEAD /oauth2/auth through Fastify too (tests compare the two). */
export interface ServerOptions {
  readonly fastPath?: boolean;
}

/** Builds the main Fastify instance over precompiled services. */
export function createHttpServer(
  initial: Services,
  tls?: TlsOptions,
  { fastPath = true }: ServerOptions = {},
): FastifyInstance {
  const app = Fastify({
    logger: false,
    // The proxy's request id (or ours) is tracked in RequestState; Fastify's own id is unused.
    genReqId: () => '',
    return503OnClosing: true,
    serverFactory: (fastifyHandler: (req: IncomingMessage, res: ServerResponse) => void) => {
      // GET and HEAD /oauth2/auth are answered before Fastify sees them (fastAuth); everything else,
      // including any request while closing (Fastify's 503), goes through Fastify.
      const handler = (req: IncomingMessage, res: ServerResponse) => {
        const method = req.method;
        const url = req.url ?? '/';
        const kit = k;
        // node:http's public API: a response with this header ends its connection once it is sent.
        if (draining) res.setHeader('connection', 'close');
        if (!closing && fastPath && (method === 'GET' || method === 'HEAD') && isAuthUrl(kit, url)) {
          fastAuth(kit, method, url, req, res);
        } else {
          fastifyHandler(req, res);
        }
      };
      if (!tls) return createHttp({ maxHeaderSize: MAX_HEADER_SIZE }, handler);
      return createHttps(
        {
          key: tls.key,
          cert: tls.cert,
          minVersion: tls.minVersion ?? 'TLSv1.2',
          maxHeaderSize: MAX_HEADER_SIZE,
        },
        handler,
      );
    },
  });
  // A request node:http cannot parse: with no 'clientError' listener, node:http itself writes its canned
  // 400 (431, 408) only when no answer is in flight on the connection, then closes it. Fastify's default
  // listener writes its 400 even after or into an answer in flight: one more answer than requests, so a
  // client reusing the connection pairs the next answer with the wrong request. Its listener is removed, so
  // bad input meets node:http's own handling, exactly as on a plain node:http server.
  app.server.removeAllListeners('clientError');
  let closing = false;
  let draining = false;
  app.decorate('beginDrain', () => {
    draining = true;
  });
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  for (const m of METHODS) if (!app.supportedMethods.includes(m)) app.addHttpMethod(m, { hasBody: true });

  // Bodies are read only as forms (callback, sign_in); anything else is read and dropped, bounded.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: 64 * 1024 },
    (_r, body, done) => done(null, body),
  );
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 1024 * 1024 }, (_r, _body, done) =>
    done(null, undefined),
  );
  app.decorateRequest('gh', null as unknown as RequestState);

  /** Everything compiled from one set of services; replaced whole on a configuration reload. */
  const compile = (svc: Services) => {
    const o = svc.opts;
    const routes = createRoutes(svc);
    const prefix = o.proxyPrefix;
    const table = new Map<string, Route>([
      ['/robots.txt', routes.robots],
      [`${prefix}/auth`, routes.auth],
      [`${prefix}/sign_in`, routes.signIn],
      [`${prefix}/start`, routes.start],
      [`${prefix}/callback`, routes.callback],
      [`${prefix}/userinfo`, routes.userinfo],
      [`${prefix}/sign_out`, routes.signOut],
      [`${prefix}/backchannel_logout`, routes.backchannelLogout],
    ]);
    return {
      svc,
      o,
      routes,
      table,
      // undefined when a ping or ready path shadows the auth path (Fastify's handler answers those first).
      authPath:
        o.pingPaths.has(`${prefix}/auth`) || o.readyPath === `${prefix}/auth` ? undefined : `${prefix}/auth`,
      staticPrefix: `${prefix}/static/`,
      idHeader: o.requestIdHeader,
      obs: svc.observer,
      logRequests: o.requestLogging,
      logLine: requestLogWriter(svc.log),
      authLine: o.authLogging && !o.requestLogging ? authLogWriter(svc.log) : undefined,
    };
  };
  type Kit = ReturnType<typeof compile>;
  let k: Kit = compile(initial);
  app.decorate('swapServices', (next: Services) => {
    k = compile(next);
  });

  app.setErrorHandler((err: Error & { statusCode?: number }, req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) {
      // The same answer as the fast path's (Go's http.Error shape); never the error's text.
      logInternalError(err, req.raw.url);
      plain(reply, 500);
      return;
    }
    k.svc.log.info({ status, err: err.message }, 'bad request');
    reply.code(status).header('content-type', 'text/plain; charset=utf-8').send('Bad Request\n');
  });

  const logInternalError = (err: unknown, url: string | undefined) =>
    k.svc.log.error(
      { err: err instanceof Error ? err.message : String(err), path: url?.split('?')[0] },
      'internal error',
    );

  // Request log lines are formatted after the responses of this event-loop turn have been written (one
  // setImmediate per turn, not per request): formatting them one after another instead of in between
  // requests measured ~2-3 µs cheaper per request. Lines keep their order; the timestamps are those of
  // formatting, within the same turn.
  const pendingLines: [(line: never) => void, unknown][] = [];
  let drainScheduled = false;
  const drainLines = () => {
    drainScheduled = false;
    for (const [write, line] of pendingLines) (write as (line: unknown) => void)(line);
    pendingLines.length = 0;
  };
  const queueLine = <L>(write: (line: L) => void, line: L) => {
    pendingLines.push([write, line]);
    if (!drainScheduled) {
      drainScheduled = true;
      setImmediate(drainLines);
    }
  };
  app.addHook('onClose', (_app, done) => {
    drainLines();
    done();
  });

  /** The proxy's request id, or one made up once for this request. */
  const requestIdOf = (st: RequestState, headers: IncomingHttpHeaders): string => {
    if (st.id === undefined) st.id = headerValue(headers[st.kit.idHeader]) || randomUUID();
    return st.id;
  };

  /** Metrics and the request log line for one answered request (both paths). */
  const finish = (
    st: RequestState,
    method: string,
    path: string,
    headers: IncomingHttpHeaders,
    status: number,
  ) => {
    if (!st.measured && !st.logged) return;
    const kit = st.kit;
    const seconds = (performance.now() - st.started) / 1000;
    if (kit.obs && st.measured) {
      kit.obs.inFlight(-1);
      kit.obs.response(status, method, seconds);
    }
    if (kit.authLine !== undefined && st.decision !== undefined) {
      // Every decision, excluded logging paths too.
      const reqId = requestIdOf(st, headers);
      queueLine(kit.authLine, { reqId, status: st.decision, reason: st.reason, user: st.user, path });
    }
    if (st.logged && !kit.o.excludeLoggingPaths.has(path)) {
      queueLine(kit.logLine, {
        reqId: st.id ?? headerValue(headers[kit.idHeader]),
        method,
        path,
        status,
        duration: Math.round(seconds * 1e6) / 1e6,
        user: st.user,
        reason: st.reason,
      });
    }
  };

  app.addHook('onResponse', (req, reply, done) => {
    const st = req.gh;
    if (st)
      finish(st, req.method, (req.raw.url ?? '/').split('?')[0] as string, req.headers, reply.statusCode);
    done();
  });

  const newState = (kit: Kit): RequestState => ({
    reason: undefined,
    user: undefined,
    started: kit.logRequests ? performance.now() : 0,
    measured: false,
    logged: kit.logRequests && !kit.o.silencePingLogging,
    id: undefined,
    decision: undefined,
    kit,
  });

  /** Measured from here on (everything but the health and readiness checks). */
  const measure = (kit: Kit, state: RequestState) => {
    state.measured = true;
    state.logged = kit.logRequests;
    if (kit.obs) {
      if (!kit.logRequests) state.started = performance.now();
      kit.obs.inFlight(1);
    }
  };

  // One object shape for both paths (the fast path's `req` is undefined), so the route code stays monomorphic.
  const contextFor = <R extends ReplyLike, Q>(
    req: Q,
    reply: R,
    method: string,
    url: string,
    qi: number,
    path: string,
    headers: IncomingHttpHeaders,
    peer: string | undefined,
    state: RequestState,
  ): CheckContext<R> & { readonly req: Q } => ({
    req,
    reply,
    facts: { method, rawUrl: url, headers, peer, isTls: tls !== undefined },
    path,
    rawQuery: qi < 0 ? '' : url.slice(qi + 1),
    cookies: parseCookieHeader(headers.cookie),
    state,
    requestId: () => requestIdOf(state, headers),
  });

  /** Whether `url` is the auth path (with or without a query) of these services. */
  const isAuthUrl = (kit: Kit, url: string): boolean => {
    const ap = kit.authPath;
    return (
      ap !== undefined &&
      url.startsWith(ap) &&
      (url.length === ap.length || url.charCodeAt(ap.length) === 63) /* ? */
    );
  };

  /**
   * GET and HEAD on the auth path (isAuthUrl), answered with the same route code and the same bytes as
   * through Fastify, written on node:http's response (RawReply).
   */
  const fastAuth = (
    kit: Kit,
    method: 'GET' | 'HEAD',
    url: string,
    req: IncomingMessage,
    res: ServerResponse,
  ): void => {
    const ap = kit.authPath as string;
    const headers = req.headers;
    const reply = new RawReply(req, res);
    const state = newState(kit);
    measure(kit, state);
    // Metrics and the log line; a failure there (an observer's bug) is logged, never thrown at the socket.
    const end = () => {
      try {
        finish(state, method, ap, headers, reply.statusCode);
      } catch (err) {
        logInternalError(err, url);
      }
    };
    const done = () => {
      // A route that resolved without answering would leave the proxy waiting: fail it instead.
      if (!reply.sent) return failed(new Error('the auth route did not answer'));
      end();
    };
    const failed = (err: unknown) => {
      // Fastify's error handler, for the same failure: a logged 500, never the error's text.
      logInternalError(err, url);
      if (!reply.sent) {
        reply.reset();
        plain(reply, 500);
      } else if (!res.writableEnded) {
        // Part of the answer went out: end the connection rather than leave the proxy a torn answer.
        res.destroy();
      }
      end();
    };
    let r: RawReply | Promise<RawReply>;
    try {
      r = kit.routes.auth(
        contextFor(
          undefined,
          reply,
          method,
          url,
          url.length === ap.length ? -1 : ap.length,
          ap,
          headers,
          req.socket.remoteAddress,
          state,
        ),
      );
    } catch (err) {
      failed(err);
      return;
    }
    if (r instanceof Promise) r.then(done, failed);
    else done();
  };

  const handler = (req: FastifyRequest, reply: FastifyReply) => {
    const kit = k;
    const o = kit.o;
    const url = req.raw.url ?? '/';
    const qi = url.indexOf('?');
    const path = qi < 0 ? url : url.slice(0, qi);
    const headers = req.raw.headers;
    const state = newState(kit);
    req.gh = state;
    if (
      o.pingPaths.has(path) &&
      (o.pingUserAgents.size === 0 || o.pingUserAgents.has(headers['user-agent'] ?? ''))
    ) {
      return reply.code(200).header('content-type', 'text/plain; charset=utf-8').send('OK');
    }
    if (path === o.readyPath && o.readyPath !== '') {
      if (draining)
        return reply
          .code(503)
          .header('content-type', 'text/plain; charset=utf-8')
          .send('error: shutting down');
      return kit.svc
        .readiness()
        .then((err) =>
          err === undefined
            ? reply.code(200).header('content-type', 'text/plain; charset=utf-8').send('OK')
            : reply.code(503).header('content-type', 'text/plain; charset=utf-8').send(`error: ${err}`),
        );
    }
    measure(kit, state);
    const route =
      kit.table.get(path) ??
      (path.startsWith(kit.staticPrefix) ? kit.routes.staticAsset : kit.routes.catchAll);
    return route(
      contextFor(req, reply, req.method, url, qi, path, headers, req.raw.socket.remoteAddress, state),
    );
  };
  app.route({ method: app.supportedMethods, url: '*', handler });
  app.route({ method: app.supportedMethods, url: '/', handler });
  return app;
}

function headerValue(v: string | string[] | undefined): string {
  return (Array.isArray(v) ? v[0] : v) ?? '';
}
