#!/usr/bin/env bash
# setup.sh - install what the test suite needs; idempotent, about a second when done.
#
# Usage: scripts/setup.sh [--no-peers] [--no-autobahn]
#   Node `ws` for the interop peers   npm ci in tests/interop/node (when node_modules is
#                                     missing or older than package-lock.json)
#   Python `websockets`, and          tests/interop/python/.venv (python3 -m venv), or when
#   `prometheus-client` (the          venv is unavailable pip --target tests/interop/python/site
#   OpenMetrics parser for /metrics)  with the wrapper tests/interop/python/site/python
#   JS client deps                    npm ci in js/ when js/package-lock.json exists
#   playwright-core for the browser   npm ci in tests/interop/browser (with the peers)
#   Chromium (browser tests)          apt-get install chromium when /usr/bin/chromium is missing
#   Redis (zapsocket-redis tests)     apt-get install redis-server when redis-server is missing
#   Autobahn|Testsuite (wstest)       ../shared/conformance/install.sh (outside the repo)
#   --no-peers     skip Node and Python      --no-autobahn  skip the Autobahn install
# Env: ZAPSOCKET_HOST_PYTHON (python3), ZAPSOCKET_CONFORMANCE (../shared/conformance).
# Logs of each install: target/test-logs/setup-*.log (printed when a step fails).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PEERS=1
AUTOBAHN=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-peers) PEERS=0 ;;
    --no-autobahn) AUTOBAHN=0 ;;
    -h|--help) usage_of "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

NODE_DIR="$ROOT/tests/interop/node"
PY_DIR="$ROOT/tests/interop/python"
done_list=()

# Debian packages, only as a fallback on a machine that lacks them (root + apt-get).
apt_install() {
  command -v apt-get > /dev/null && [ "$(id -u)" = 0 ] || return 1
  quietly setup-apt-update apt-get update -q || return 1
  DEBIAN_FRONTEND=noninteractive quietly setup-apt-install apt-get install -y -q --no-install-recommends "$@"
}

# npm_install DIR: npm ci (or npm install without a lock) unless node_modules is current.
npm_install() {
  local dir="$1"
  if [ -f "$dir/node_modules/.package-lock.json" ] \
     && { [ ! -f "$dir/package-lock.json" ] || [ ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; }; then
    return 0
  fi
  local cmd=(npm ci)
  [ -f "$dir/package-lock.json" ] || cmd=(npm install)
  (cd "$dir" && quietly "setup-npm-$(basename "$dir")" "${cmd[@]}" --no-audit --no-fund --loglevel=error) \
    || die "${cmd[*]} failed in ${dir#"$ROOT"/}"
}

setup_node() {
  if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
    log "setup: node/npm not found; installing Debian's nodejs and npm"
    apt_install nodejs npm || die "node and npm are needed (Node >= 18): install them"
  fi
  npm_install "$NODE_DIR"
  [ -f "$NODE_DIR/node_modules/ws/package.json" ] || die "ws missing from ${NODE_DIR#"$ROOT"/}/node_modules after npm ci"
  local v
  v="$(node -p 'require(process.argv[1]).version' "$NODE_DIR/node_modules/ws/package.json")"
  done_list+=("node $(node --version) + ws $v")
}

# The stamp records the requirements and the interpreter they were installed for.
py_stamp() { { cat "$PY_DIR/requirements.txt"; "$HOST_PYTHON" -c 'import sys; print(sys.executable, sys.version)'; } | cksum; }

py_ok() { # py_ok PYTHON STAMPFILE
  [ -x "$1" ] && [ -f "$2" ] && [ "$(cat "$2")" = "$(py_stamp)" ] \
    && "$1" -c 'import websockets, prometheus_client' 2> /dev/null
}

setup_python() {
  command -v "$HOST_PYTHON" > /dev/null || die "$HOST_PYTHON not found (set ZAPSOCKET_HOST_PYTHON)"
  local venv="$PY_DIR/.venv" site="$PY_DIR/site" py=""
  if py_ok "$venv/bin/python" "$venv/.zapsocket-stamp"; then
    py="$venv/bin/python"
  elif py_ok "$site/python" "$site/.zapsocket-stamp"; then
    py="$site/python"
  elif rm -rf "$venv" && quietly setup-python-venv "$HOST_PYTHON" -m venv "$venv" 2> /dev/null; then
    quietly setup-python-pip "$venv/bin/python" -m pip install --disable-pip-version-check -q \
      -r "$PY_DIR/requirements.txt" || die "pip install into ${venv#"$ROOT"/} failed"
    py_stamp > "$venv/.zapsocket-stamp"
    py="$venv/bin/python"
  else
    log "setup: '$HOST_PYTHON -m venv' is unavailable here; installing with pip --target instead"
    rm -rf "$venv" "$site"
    quietly setup-python-pip "$HOST_PYTHON" -m pip install --disable-pip-version-check -q \
      --target "$site/lib" -r "$PY_DIR/requirements.txt" \
      || die "pip install --target failed (no venv, no usable pip: apt-get install python3-venv or python3-pip)"
    local host
    host="$("$HOST_PYTHON" -c 'import sys; print(sys.executable)')"
    cat > "$site/python" <<EOF
#!/bin/sh
# Made by scripts/setup.sh: $host with tests/interop/python/site/lib on its path.
here="\$(cd "\$(dirname "\$0")" && pwd)"
PYTHONPATH="\$here/lib\${PYTHONPATH:+:\$PYTHONPATH}" exec "$host" "\$@"
EOF
    chmod +x "$site/python"
    py_stamp > "$site/.zapsocket-stamp"
    py="$site/python"
  fi
  "$py" -c 'import websockets, prometheus_client' || die "$py cannot import websockets and prometheus_client"
  done_list+=("python websockets $("$py" -c 'import websockets; print(websockets.__version__)') + prometheus-client (${py#"$ROOT"/})")
}

setup_autobahn() {
  need_conformance
  quietly setup-autobahn bash "$CONFORMANCE/install.sh" || die "Autobahn install ($CONFORMANCE/install.sh) failed"
  done_list+=("autobahn wstest")
}

if [ "$PEERS" = 1 ]; then
  setup_node
  setup_python
  # Headless Chromium as an interop peer (tests/interop/browser, driven by playwright-core).
  npm_install "$ROOT/tests/interop/browser"
  done_list+=("playwright-core (tests/interop/browser)")
fi
if [ -f "$ROOT/js/package.json" ] && [ -f "$ROOT/js/package-lock.json" ]; then
  npm_install "$ROOT/js"
  done_list+=("js/node_modules")
fi
[ "$AUTOBAHN" = 1 ] && setup_autobahn

# Headless Chromium for js/test/browser.test.mjs and the interop peer in
# tests/interop/browser (Debian's package; root + apt-get).
if { [ -f "$ROOT/js/test/browser.test.mjs" ] || { [ "$PEERS" = 1 ] && [ -d "$ROOT/tests/interop/browser" ]; }; } \
   && [ ! -x /usr/bin/chromium ]; then
  apt_install chromium || die "chromium is needed for the headless browser tests (apt-get install -y chromium, as root)"
  done_list+=("chromium")
fi

# openssl makes the test certificate of js/test/h2.test.mjs (Chromium over HTTP/2).
if [ -f "$ROOT/js/test/h2.test.mjs" ] && ! command -v openssl > /dev/null; then
  apt_install openssl || die "openssl is needed for the HTTP/2 browser test (apt-get install -y openssl, as root)"
  done_list+=("openssl")
fi

# A real Redis for the zapsocket-redis and `zap serve --redis` tests (Debian's package;
# each test starts its own redis-server on a free port, without persistence).
if [ -d "$ROOT/crates/zapsocket-redis" ] && ! command -v redis-server > /dev/null; then
  apt_install redis-server || die "redis-server is needed for the zapsocket-redis tests (apt-get install -y redis-server, as root)"
  done_list+=("redis-server")
fi

if [ "${#done_list[@]}" -gt 0 ]; then
  summary="$(printf '%s; ' "${done_list[@]}")"
  echo "setup: ok: ${summary%; }"
else
  echo "setup: nothing to do"
fi
