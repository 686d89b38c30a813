# tiergate as a container: the gateway, its built-in plugins and the shipped (simulator)
# policy at /etc/tiergate/gateway.yaml. Mount your own policy over that folder (a
# Kubernetes ConfigMap: see deploy/). tiergate runs its TypeScript through tsx, a runtime
# dependency, so there is no build step and `npm ci --omit=dev` is the whole install.
#
#   docker build -t tiergate .
#   docker run --rm -p 8080:8080 -v "$PWD/deploy/policy:/etc/tiergate:ro" --env-file tiergate.env tiergate
FROM node:20-slim

ENV NODE_ENV=production \
    TIERGATE_CONFIG=/etc/tiergate/gateway.yaml \
    TIERGATE_LOG_FORMAT=json \
    PORT=8080

WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY tsconfig.json ./
COPY bin ./bin
COPY schemas ./schemas
COPY src ./src
COPY plugins ./plugins
# The shipped policy answers through the simulator and, having no keys, serves loopback
# only: enough for the health check, not for clients. Its decision log goes next to it,
# so the folder belongs to the runtime user; a mounted policy replaces the whole folder.
COPY gateway.yaml /etc/tiergate/gateway.yaml
RUN mkdir -p /etc/tiergate/logs && chown -R node:node /etc/tiergate

# The image's own user (uid 1000), never root.
USER node
RUN node bin/tiergate.js validate /etc/tiergate/gateway.yaml

EXPOSE 8080
# /healthz: the process is up (Kubernetes uses /readyz for readiness; see deploy/).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT || 8080}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM finishes in-flight requests, then exits.
STOPSIGNAL SIGTERM
CMD ["node", "bin/tiergate.js", "serve", "--config", "/etc/tiergate/gateway.yaml"]
