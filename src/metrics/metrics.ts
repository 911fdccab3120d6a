// The Prometheus registry and the separate metrics server (COMPAT.md §1.14, §9.1).
import Fastify, { type FastifyInstance, type FastifyPluginCallback } from 'fastify';
import type { IMetricsPluginOptions } from 'fastify-metrics';
import metricsModule from 'fastify-metrics';
import type { Reason } from '../authz/decide.js';
import type { Observer } from '../http/services.js';

interface Inc {
  inc(v?: number): void;
}
interface Obs {
  observe(v: number): void;
}

// fastify-metrics is CommonJS with an ES default export: under NodeNext the plugin sits one level down.
const metricsPlugin = (
  metricsModule as unknown as { default: FastifyPluginCallback<Partial<IMetricsPluginOptions>> }
).default;

const PROMTOOL_LINT_FAILURES = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
  'nodejs_eventloop_utilization_histogram',
  'nodejs_eventloop_utilization_summary',
];

export interface MetricsServer {
  readonly app: FastifyInstance;
  readonly observer: Observer;
}

/**
 * Builds the metrics listener's Fastify app (every path serves the exposition, as oauth2-proxy does)
 * and an Observer the main server feeds. Children of labelled metrics are cached so the hot path only
 * increments.
 */
export async function createMetricsServer(): Promise<MetricsServer> {
  const app = Fastify({ logger: false });
  await app.register(metricsPlugin, {
    endpoint: null,
    routeMetrics: { enabled: false },
    defaultMetrics: { enabled: true },
    clearRegisterOnInit: true,
  });
  const client = app.metrics.client;
  const register = client.register;
  // These default collectors break `promtool check metrics` lint rules (non-counters named *_total, type
  // names inside metric names); the rest of the nodejs_* / process_* set stays.
  for (const name of PROMTOOL_LINT_FAILURES) register.removeSingleMetric(name);
  const requests = new client.Counter({
    name: 'oauth2_proxy_requests_total',
    help: 'Total number of requests by HTTP status code.',
    labelNames: ['code'],
  });
  const inFlight = new client.Gauge({
    name: 'oauth2_proxy_requests_in_flight',
    help: 'Current number of requests being served.',
  });
  const duration = new client.Histogram({
    name: 'oauth2_proxy_response_duration_seconds',
    help: 'A histogram of request latencies.',
    labelNames: ['method'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  });
  const decisions = new client.Counter({
    name: 'gatehouse_auth_decisions_total',
    help: 'Forward-auth decisions by status and reason.',
    labelNames: ['status', 'reason'],
  });
  const handlerRequests = new client.Counter({
    name: 'promhttp_metric_handler_requests_total',
    help: 'Total number of scrapes by HTTP status code.',
    labelNames: ['code'],
  });
  const handlerInFlight = new client.Gauge({
    name: 'promhttp_metric_handler_requests_in_flight',
    help: 'Current number of scrapes being served.',
  });

  const byCode = new Map<number, Inc>();
  const byMethod = new Map<string, Obs>();
  const byDecision = new Map<string, Inc>();
  const observer: Observer = {
    response(status, method, seconds) {
      let c = byCode.get(status);
      if (!c) {
        c = requests.labels(String(status));
        byCode.set(status, c);
      }
      c.inc();
      let h = byMethod.get(method);
      if (!h) {
        h = duration.labels(method.toLowerCase());
        byMethod.set(method, h);
      }
      h.observe(seconds);
    },
    decision(status: number, reason: Reason) {
      const k = `${status}|${reason}`;
      let c = byDecision.get(k);
      if (!c) {
        c = decisions.labels(String(status), reason);
        byDecision.set(k, c);
      }
      c.inc();
    },
    inFlight(delta) {
      inFlight.inc(delta);
    },
  };

  const serve = async (_req: unknown, reply: import('fastify').FastifyReply) => {
    handlerInFlight.inc();
    try {
      const body = await register.metrics();
      handlerRequests.labels('200').inc();
      return reply.code(200).header('content-type', register.contentType).send(body);
    } catch {
      handlerRequests.labels('500').inc();
      return reply.code(500).send('error collecting metrics\n');
    } finally {
      handlerInFlight.dec();
    }
  };
  app.route({ method: ['GET', 'HEAD', 'POST'], url: '*', handler: serve });
  app.route({ method: ['GET', 'HEAD', 'POST'], url: '/', handler: serve });
  return { app, observer };
}
