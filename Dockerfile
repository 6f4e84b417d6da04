# syntax=docker/dockerfile:1
# The reference server (`tenantry serve`) from this repository, as a non-root image.
# Build: docker build -t tenantry .   Run: see compose.yaml.

ARG NODE_IMAGE=node:24-bookworm-slim

# 1. Build and pack the library exactly as it is published (dist/, README, LICENSE).
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.base.json ./
COPY packages/tenantry/package.json packages/tenantry/
COPY examples/prisma-express/package.json examples/prisma-express/
COPY examples/drizzle-hono/package.json examples/drizzle-hono/
COPY examples/nestjs/package.json examples/nestjs/
RUN npm ci --no-audit --no-fund --workspace tenantry --include-workspace-root
COPY packages/tenantry packages/tenantry
RUN npm run build --workspace tenantry \
 && npm pack --workspace tenantry --ignore-scripts --pack-destination /out \
 && mv /out/tenantry-*.tgz /out/tenantry.tgz

# 2. Install the tarball with the optional peers the server needs, production only.
FROM ${NODE_IMAGE} AS install
WORKDIR /app
COPY --from=build /out/tenantry.tgz /tmp/tenantry.tgz
COPY docker/server-package.json package.json
RUN npm install --omit=dev --no-audit --no-fund /tmp/tenantry.tgz && npm cache clean --force

# 3. The runtime: no build tools, no sources, a non-root user.
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app
COPY --from=install --chown=node:node /app /app
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/app/node_modules/tenantry/dist/cli/main.js"]
CMD ["serve"]
