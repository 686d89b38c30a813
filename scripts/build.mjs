// npm run build (and `prepare`, so that `npm install` in a clone builds): compiles src/
// and plugins/ to dist/ with tsconfig.build.json, then makes dist/ an exact mirror of
// what ships. Incremental, because `npm test` builds before every run: tsc re-emits
// only what changed, and this script removes what tsc never does (the output of a
// deleted or renamed source file: a stale built plugin would still be discovered) and
// copies the files the code reads beside itself (the plugin version hook, the
// dashboard's page, the JSON schemas, which src/ reads as ../../schemas).
// Plain JavaScript: it runs before anything is compiled.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const dist = path.join(root, 'dist');
const buildInfo = path.join(dist, '.tsbuildinfo');
const COMPILED_FOLDERS = ['src', 'plugins'];
const ASSET_FOLDERS = [...COMPILED_FOLDERS, 'schemas'];
const isTypeScript = (file) => file.endsWith('.ts') && !file.endsWith('.d.ts');

function filesUnder(folder, out = []) {
  if (!existsSync(folder)) return out;
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const full = path.join(folder, entry.name);
    if (entry.isDirectory()) filesUnder(full, out);
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

/** Relative paths of what dist/ should hold for one source file. */
function outputsOf(relative) {
  if (!isTypeScript(relative)) return [relative];
  const stem = relative.slice(0, -'.ts'.length);
  return [`${stem}.js`, `${stem}.d.ts`];
}

const sources = ASSET_FOLDERS.flatMap((folder) => filesUnder(path.join(root, folder))).map((file) => path.relative(root, file));
const expected = new Set(sources.flatMap(outputsOf));

// tsc trusts its build info: an output deleted by hand would not be emitted again.
if (sources.filter(isTypeScript).some((file) => !existsSync(path.join(dist, outputsOf(file)[0])))) rmSync(buildInfo, { force: true });

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
try {
  execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
} catch {
  process.exit(1);
}

for (const file of ASSET_FOLDERS.flatMap((folder) => filesUnder(path.join(dist, folder)))) {
  if (!expected.has(path.relative(dist, file))) rmSync(file);
}
for (const folder of ASSET_FOLDERS) removeEmptyFolders(path.join(dist, folder));

for (const relative of sources.filter((file) => !isTypeScript(file))) {
  const from = path.join(root, relative);
  const to = path.join(dist, relative);
  if (existsSync(to) && readFileSync(to).equals(readFileSync(from))) continue;
  mkdirSync(path.dirname(to), { recursive: true });
  copyFileSync(from, to);
}

function removeEmptyFolders(folder) {
  if (!existsSync(folder)) return;
  for (const entry of readdirSync(folder, { withFileTypes: true })) if (entry.isDirectory()) removeEmptyFolders(path.join(folder, entry.name));
  if (readdirSync(folder).length === 0) rmSync(folder, { recursive: true });
}
