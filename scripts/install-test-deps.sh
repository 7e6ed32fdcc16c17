#!/usr/bin/env bash
# What the test suite needs beyond Rust: PostgreSQL 15 binaries (the
# PostgreSQL tests start throwaway clusters), the web page's browser test
# (crates/server/tests/web_browser.rs drives Debian's Chromium with
# playwright-core from npm), the boundary's tests (curl and git as proxied
# clients, python3 as a test upstream, setpriv from util-linux for the jail;
# squid to compare against), rsyslog with RELP (`warden bench --compare
# rsyslog`; the syslog export's test receives into a file with it) and
# promtool from prometheus (`/metrics` of agent and server pass `promtool
# check metrics`). Idempotent: installs only what is missing. Run as root;
# `scripts/test` runs it before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages by the command that shows they are there.
missing=()
need() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || missing+=("$2"); }
need /usr/lib/postgresql/15/bin/initdb postgresql-15
need curl curl
need git git
need python3 python3
need setpriv util-linux
need unshare util-linux
need squid squid-openssl
need rsyslogd rsyslog
need promtool prometheus
[ -e /usr/lib/x86_64-linux-gnu/rsyslog/omrelp.so ] || [ -n "$(find /usr/lib -name omrelp.so 2>/dev/null | head -1)" ] || missing+=(rsyslog-relp)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

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
