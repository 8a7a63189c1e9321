# scripts/interop-env.sh - source it (`. scripts/interop-env.sh`) to export what the Rust
# interop tests read to spawn the foreign peers (installed by scripts/setup.sh):
#   ZAPSOCKET_INTEROP=1          set only when both peers below are installed
#   ZAPSOCKET_INTEROP_DIR        <repo>/tests/interop; the peers are
#                                  node/echo_server.mjs PORT, node/echo_client.mjs URL,
#                                  python/echo_server.py PORT, python/echo_client.py URL
#   ZAPSOCKET_NODE               the node binary: "$ZAPSOCKET_NODE" "$DIR/node/echo_server.mjs" 0
#   ZAPSOCKET_NODE_MODULES       <repo>/tests/interop/node/node_modules (holds `ws`; the .mjs
#                                  files find it on their own, whatever the cwd)
#                                (headless Chromium: "$ZAPSOCKET_NODE" "$DIR/browser/echo_client.mjs"
#                                  URL [PAGE_URL], with playwright-core in browser/node_modules and
#                                  /usr/bin/chromium, or $CHROMIUM)
#   ZAPSOCKET_PYTHON             a python that imports `websockets` and `prometheus_client`:
#                                  "$ZAPSOCKET_PYTHON" "$DIR/python/echo_server.py" 0,
#                                  "$ZAPSOCKET_PYTHON" "$DIR/python/openmetrics_parse.py" < TEXT
# Values already set in the environment are kept. Changes nothing else; never cds.

_zs_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ZAPSOCKET_INTEROP_DIR="${ZAPSOCKET_INTEROP_DIR:-$_zs_root/tests/interop}"
export ZAPSOCKET_NODE_MODULES="${ZAPSOCKET_NODE_MODULES:-$ZAPSOCKET_INTEROP_DIR/node/node_modules}"
if [ -z "${ZAPSOCKET_NODE:-}" ]; then
  ZAPSOCKET_NODE="$(command -v node || true)"
fi
export ZAPSOCKET_NODE
if [ -z "${ZAPSOCKET_PYTHON:-}" ]; then
  # setup.sh makes a venv, or (without venv support) a --target install with a wrapper
  for _zs_py in "$ZAPSOCKET_INTEROP_DIR/python/.venv/bin/python" "$ZAPSOCKET_INTEROP_DIR/python/site/python"; do
    if [ -x "$_zs_py" ]; then ZAPSOCKET_PYTHON="$_zs_py"; break; fi
  done
  unset _zs_py
fi
export ZAPSOCKET_PYTHON="${ZAPSOCKET_PYTHON:-}"
if [ -n "$ZAPSOCKET_NODE" ] && [ -f "$ZAPSOCKET_NODE_MODULES/ws/package.json" ] && [ -n "$ZAPSOCKET_PYTHON" ]; then
  export ZAPSOCKET_INTEROP=1
else
  printf 'interop-env: peers not installed (run scripts/setup.sh); ZAPSOCKET_INTEROP not set\n' >&2
fi
unset _zs_root
