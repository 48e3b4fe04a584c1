# The dg-upgrade worker. In production it runs ON the DecisionGraph app node (it needs that
# node's disk, git checkout, mix toolchain and processes), so this image is mostly for the
# compose topology and for nodes that run the app in containers too. See README "Production".
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git postgresql-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/dg-upgrade
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY test/fixtures ./test/fixtures
COPY test/support ./test/support
RUN npx tsc -p . && node dist/src/worker/bundle.js
ENV DG_UPGRADE_PROFILE=/etc/dg-upgrade/profile.json
ENTRYPOINT ["node", "bin/dg-upgrade.js"]
CMD ["worker"]
