// Test support (not a test file): runs a real `zap serve` for the JS tests.
//
// The binary: $ZAPSOCKET_ZAP when set, else built once per process with
// `cargo build -p zapsocket-cli --bin zap` (in $CARGO_TARGET_DIR or <repo>/target).
// `zap serve --port 0` prints `listening on ws://HOST:PORT` when ready; we read the port there.
import { spawn, execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { promisify } from 'node:util';
import { WebSocket } from 'ws';

export { WebSocket };
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

let built;
/** The path of the `zap` binary, built on first use. */
export function zapBinary() {
  if (process.env.ZAPSOCKET_ZAP) return Promise.resolve(process.env.ZAPSOCKET_ZAP);
  built ??= (async () => {
    const target = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
    await promisify(execFile)('cargo', ['build', '-q', '-p', 'zapsocket-cli', '--bin', 'zap'], {
      cwd: ROOT,
      maxBuffer: 64 << 20,
    }).catch((e) => {
      throw new Error(`cargo build -p zapsocket-cli failed:\n${e.stderr || e.message}`);
    });
    return path.join(target, 'debug', 'zap');
  })();
  return built;
}

/**
 * Starts `zap serve` on 127.0.0.1 (port 0: any free port; `restart()` keeps the port).
 * Returns `{port, url, wsUrl, stop(signal), restart()}` where `wsUrl` is the realtime endpoint.
 */
export async function startServer({ args = [], port = 0 } = {}) {
  const bin = await zapBinary();
  const server = { port, args, proc: null, log: '' };
  server.start = async () => {
    // $ZAP_SERVE_ARGS (say `--reactor`) is added to every server's arguments.
    const extra = (process.env.ZAP_SERVE_ARGS || '').split(/\s+/).filter(Boolean);
    const proc = spawn(bin, ['serve', '--host', '127.0.0.1', '--port', String(server.port), ...args, ...extra], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1' },
    });
    server.proc = proc;
    const ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`zap serve did not say "listening on" within 20 s:\n${server.log}`)), 20000);
      const onData = (chunk) => {
        server.log += chunk;
        const m = /listening on wss?:\/\/([^\s/]+):(\d+)/.exec(server.log);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[2]));
        }
      };
      proc.stdout.setEncoding('utf8').on('data', onData);
      proc.stderr.setEncoding('utf8').on('data', onData);
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`zap serve exited (${code ?? signal}) before listening:\n${server.log}`));
      });
    });
    server.port = await ready;
    server.url = `http://127.0.0.1:${server.port}`;
    server.wsUrl = `ws://127.0.0.1:${server.port}/ws`;
    return server;
  };
  /** Stops the server (SIGTERM: a graceful shutdown, clients get 1001) and waits for its exit. */
  server.stop = async (signal = 'SIGTERM') => {
    const proc = server.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  /** Stops and starts again on the same port. */
  server.restart = async (signal = 'SIGTERM') => {
    await server.stop(signal);
    for (let i = 0; ; i++) {
      try {
        return await server.start();
      } catch (e) {
        if (i >= 20 || !/Address already in use|cannot listen/i.test(e.message)) throw e;
        await sleep(100); // the port is still held for a moment
      }
    }
  };
  await server.start();
  return server;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with the arguments of the next `event` on `emitter` (a Socket), or rejects after `ms`. */
export function next(socket, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, on);
      reject(new Error(`no '${event}' within ${ms} ms`));
    }, ms);
    const on = (...args) => {
      clearTimeout(timer);
      socket.off(event, on);
      resolve(args.length > 1 ? args : args[0]);
    };
    socket.on(event, on);
  });
}

/** Waits until `predicate()` is true, polling; rejects after `ms`. */
export async function until(predicate, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Collects the data of every `event` on a socket, in order. */
export function collect(socket, event) {
  const items = [];
  socket.on(event, (data) => void items.push(data));
  return items;
}
