# The service on Node 24 against an external PostgreSQL (DATABASE_URL); the
# operator CLI is on the PATH as `tenancy` (docker compose exec tenancy tenancy --help).
FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
COPY patches ./patches
# No dev dependencies (the image's own Node is 24); no embedded PostgreSQL binaries needed.
# Scripts are skipped, so the postgres.js patch (patches/) is applied here.
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund && npx patch-package
COPY tsconfig.json .gmrc ./
COPY migrations ./migrations
COPY src ./src
RUN mkdir /data && chown node:node /data \
 && printf '#!/bin/sh\nexec node /app/src/cli/main.ts "$@"\n' > /usr/local/bin/tenancy && chmod 755 /usr/local/bin/tenancy
EXPOSE 4000
USER node
CMD ["node", "src/main.ts"]
