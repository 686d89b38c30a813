// GET /dashboard: a static page (index.html, app.js, app.css, no build step) that polls
// /dashboard/data and draws it with Chart.js, served by the gateway itself from
// node_modules: the page makes no request beyond the gateway.
import { createRequire } from 'node:module';
import path from 'node:path';
import { Router, type Response } from 'express';
import type { RuntimeManager } from '../../policy/reload.ts';
import type { DashboardAggregator } from '../../observe/dashboard-aggregator.ts';

const here = import.meta.dirname;

/** chart.js does not export its UMD build, so find it next to the main entry. */
function chartJsPath(): string | null {
  try {
    const main = createRequire(import.meta.url).resolve('chart.js');
    return path.join(path.dirname(main), 'chart.umd.js');
  } catch {
    return null;
  }
}

const CHART_JS = chartJsPath();

// Everything from the gateway itself; Chart.js styles its canvases through the DOM,
// which style-src does not restrict.
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function sendStatic(res: Response, file: string, type: string, maxAgeSeconds = 0): void {
  res.setHeader('content-type', type);
  res.setHeader('cache-control', maxAgeSeconds ? `public, max-age=${maxAgeSeconds}` : 'no-cache');
  res.setHeader('x-content-type-options', 'nosniff');
  res.sendFile(file, { etag: false, lastModified: false }, (err) => {
    if (err && !res.headersSent) res.status(404).end();
  });
}

export function dashboardRouter(aggregator: DashboardAggregator, manager: RuntimeManager): Router {
  const router = Router({ strict: true });

  // The page's URLs are relative, so it also works under a path prefix: /dashboard → /dashboard/.
  router.get('/dashboard', (_req, res) => {
    res.redirect(302, 'dashboard/');
  });
  router.get('/dashboard/', (_req, res) => {
    res.setHeader('content-security-policy', CSP);
    res.setHeader('x-frame-options', 'DENY');
    sendStatic(res, path.join(here, 'index.html'), 'text/html; charset=utf-8');
  });
  router.get('/dashboard/app.js', (_req, res) => {
    sendStatic(res, path.join(here, 'app.js'), 'text/javascript; charset=utf-8');
  });
  router.get('/dashboard/app.css', (_req, res) => {
    sendStatic(res, path.join(here, 'app.css'), 'text/css; charset=utf-8');
  });
  router.get('/dashboard/assets/chart.umd.js', (_req, res) => {
    if (!CHART_JS) res.status(404).type('text/plain').send('chart.js is not installed');
    else sendStatic(res, CHART_JS, 'text/javascript; charset=utf-8', 3600);
  });
  router.get('/dashboard/data', (_req, res) => {
    const runtime = manager.runtime;
    const status = manager.status();
    res.setHeader('cache-control', 'no-store');
    res.json({
      generated_at: new Date().toISOString(),
      policy_version: runtime.version,
      loaded_at: status.loaded_at,
      last_reload: status.last_reload,
      last_reload_error: status.last_reload_error,
      // The ladder, cheapest first: the page stacks and colours tiers in this order.
      tiers: runtime.tiers.map((t) => t.name),
      ...aggregator.view(),
    });
  });
  return router;
}
