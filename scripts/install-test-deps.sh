#!/usr/bin/env bash
# What the test suite needs beyond Rust and PostgreSQL: the web page's
# browser test (crates/server/tests/web_browser.rs) drives Debian's Chromium
# with playwright-core from npm. Idempotent: installs only what is missing.
# Run as root (CI runs it before `cargo nextest run --workspace --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "installing nodejs and npm (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
BROWSER=crates/server/tests/browser
if [ ! -f "$BROWSER/node_modules/playwright-core/package.json" ]; then
  echo "installing playwright-core (npm ci in $BROWSER)"
  # The lock file pins the version and its integrity hash; playwright-core
  # downloads no browser of its own (the test uses /usr/bin/chromium).
  (cd "$BROWSER" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "browser test dependencies: $(/usr/bin/chromium --version 2>/dev/null | head -1); node $(node --version); playwright-core $(node -p "require('./$BROWSER/node_modules/playwright-core/package.json').version")"
