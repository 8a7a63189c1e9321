// zapsocket.d.ts type-checks, accepts what it should and refuses what it should
// (js/testing/types/check.ts, with @ts-expect-error lines), and takes the maps that
// zapsocket-realtime generates (js/types.generated.d.ts) when that file exists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const JS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSC = path.join(JS, 'node_modules', 'typescript', 'bin', 'tsc');

function tsc(project) {
  return new Promise((resolve) => {
    execFile(process.execPath, [TSC, '-p', project], { cwd: JS }, (error, stdout, stderr) => {
      resolve({ ok: !error, output: `${stdout}${stderr}` });
    });
  });
}

test('zapsocket.d.ts: typed and untyped use (tsc --strict)', async () => {
  const { ok, output } = await tsc('testing/types/tsconfig.json');
  assert.ok(ok, output);
});

test('zapsocket.d.ts with js/types.generated.d.ts', { skip: !existsSync(path.join(JS, 'types.generated.d.ts')) && 'no js/types.generated.d.ts yet' }, async () => {
  const { ok, output } = await tsc('testing/types/tsconfig.generated.json');
  assert.ok(ok, output);
});
