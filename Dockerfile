# The service on Node 24 against an external PostgreSQL (DATABASE_URL).
FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# No dev dependencies (the image's own Node is 24); no embedded PostgreSQL binaries needed.
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund
COPY tsconfig.json .gmrc ./
COPY migrations ./migrations
COPY src ./src
RUN mkdir /data && chown node:node /data
EXPOSE 4000
USER node
CMD ["node", "src/main.ts"]
