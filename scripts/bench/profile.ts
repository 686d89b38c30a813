// Reads a V8 .cpuprofile (node --cpu-prof) and sums self time by function and by file
// or package, keeping only the samples taken inside a time window (the load run, not
// start-up or shutdown).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  name: string;
  /** Where it is: repo-relative file:line, package file:line, or node:internal file. */
  where: string;
  self_ms: number;
  /** Share of the busy (non-idle) samples of the window. */
  share: number;
}

export interface ProfileSummary {
  window_ms: number;
  busy_ms: number;
  samples: number;
  functions: SelfTime[];
  files: SelfTime[];
  groups: SelfTime[];
  /** Time with the function anywhere on the stack (synchronous callees included; work resumed after an await is not under its caller). */
  inclusive_repo: SelfTime[];
  /** Time with any frame of the package (or repo file) on the stack. */
  inclusive_groups: SelfTime[];
}

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

/** A function's line in a .ts source, found by its name: tsx's output has other line numbers. */
function tsLineOf(file: string, name: string, cache: Map<string, string[]>): number | null {
  if (!name || name === '(anonymous)') return null;
  let lines = cache.get(file);
  if (!lines) {
    try {
      lines = readFileSync(file, 'utf8').split('\n');
    } catch {
      lines = [];
    }
    cache.set(file, lines);
  }
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const patterns = [
    new RegExp(`\\bfunction\\*?\\s+${escaped}\\s*[<(]`),
    new RegExp(`^\\s*(?:export\\s+)?(?:const|let)\\s+${escaped}\\s*=`),
    new RegExp(`^\\s*(?:(?:public|private|protected|static|readonly|async|get|set)\\s+)*\\*?${escaped}\\s*[<(]`),
    new RegExp(`^\\s*${escaped}\\s*:`),
  ];
  for (const pattern of patterns) {
    const index = lines.findIndex((line) => pattern.test(line));
    if (index >= 0) return index + 1;
  }
  return null;
}

/** The repository's .ts file a dist/ module was compiled from, when there is one. */
function compiledFrom(root: string, relative: string): string | null {
  const prefix = `dist${path.sep}`;
  if (!relative.startsWith(prefix) || !relative.endsWith('.js')) return null;
  const source = `${relative.slice(prefix.length, -'.js'.length)}.ts`;
  return existsSync(path.join(root, source)) ? source : null;
}

function locate(frame: CallFrame, root: string, cache: Map<string, string[]>): { file: string; group: string; where: string } {
  const { url, functionName } = frame;
  if (!url) return { file: functionName || '(native)', group: SPECIAL.has(functionName) ? functionName : '(native)', where: '' };
  if (url.startsWith('node:')) {
    const parts = url.slice('node:'.length).split('/');
    const depth = parts[1] === 'deps' ? 3 : 2;
    const group = parts[0] === 'internal' && parts.length > 2 ? `node:${parts.slice(0, depth).join('/')}` : url;
    return { file: url, group, where: `${url}:${frame.lineNumber + 1}` };
  }
  let absolute = url;
  if (url.startsWith('file://')) {
    try {
      absolute = fileURLToPath(url.replace(/\?.*$/, ''));
    } catch {
      absolute = url;
    }
  }
  const modules = absolute.lastIndexOf('node_modules/');
  if (modules >= 0) {
    const rest = absolute.slice(modules + 'node_modules/'.length);
    const parts = rest.split('/');
    const pkg = parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0];
    return { file: rest, group: pkg, where: `${rest}:${frame.lineNumber + 1}` };
  }
  let relative = path.relative(root, absolute);
  // The gateway runs tsc's output from dist/: a compiled module is reported as its .ts
  // source, its line found by function name like any .ts file's (tsc keeps the names).
  const source = compiledFrom(root, relative);
  if (source) {
    relative = source;
    absolute = path.join(root, source);
  }
  if (!relative.startsWith('..')) {
    const line = absolute.endsWith('.ts') ? tsLineOf(absolute, functionName, cache) : frame.lineNumber + 1;
    const top = relative.split(path.sep)[0];
    return {
      file: relative,
      group:
        top === 'src' || top === 'plugins'
          ? relative
              .split(path.sep)
              .slice(0, top === 'plugins' ? 3 : 2)
              .join('/')
          : relative,
      where: line ? `${relative}:${line}` : relative,
    };
  }
  return { file: absolute, group: absolute, where: `${absolute}:${frame.lineNumber + 1}` };
}

/**
 * Self time inside [fromUs, toUs] of the profile's own clock, given as offsets from its
 * end (the parent only knows when the load ended relative to when the child exited).
 */
export function summariseProfile(file: string, root: string, window: { fromEndUs: number; toEndUs: number }, top = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const from = profile.endTime - window.fromEndUs;
  const to = profile.endTime - window.toEndUs;
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id);
  const selfUs = new Map<number, number>();
  let t = profile.startTime;
  let samples = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i];
    if (t < from || t > to) continue;
    // A sample's time runs until the next one.
    const delta = i + 1 < profile.timeDeltas.length ? profile.timeDeltas[i + 1] : 0;
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + delta);
    samples++;
  }
  const cache = new Map<string, string[]>();
  const functions = new Map<string, { name: string; where: string; us: number }>();
  const files = new Map<string, number>();
  const groups = new Map<string, number>();
  const places = new Map<number, { name: string; file: string; group: string; where: string; repo: boolean }>();
  const placeOf = (node: ProfileNode) => {
    let place = places.get(node.id);
    if (!place) {
      const located = locate(node.callFrame, root, cache);
      const repo = /^(src|plugins)\//.test(located.file);
      place = { name: node.callFrame.functionName || '(anonymous)', ...located, repo };
      places.set(node.id, place);
    }
    return place;
  };
  const inclusiveRepo = new Map<string, { name: string; where: string; us: number }>();
  const inclusiveGroups = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of selfUs) {
    const leaf = byId.get(id);
    if (!leaf || leaf.callFrame.functionName === '(idle)') continue;
    const seenFunctions = new Set<string>();
    const seenGroups = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const node = byId.get(at);
      if (!node || node.callFrame.functionName === '(root)') continue;
      const place = placeOf(node);
      if (!SPECIAL.has(place.name)) seenGroups.add(place.group);
      if (place.repo) {
        const key = `${place.name}@${place.where}`;
        if (!seenFunctions.has(key)) {
          seenFunctions.add(key);
          const entry = inclusiveRepo.get(key) ?? { name: place.name, where: place.where, us: 0 };
          entry.us += us;
          inclusiveRepo.set(key, entry);
        }
      }
    }
    for (const group of seenGroups) inclusiveGroups.set(group, (inclusiveGroups.get(group) ?? 0) + us);
  }
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const name = node.callFrame.functionName || '(anonymous)';
    if (name === '(idle)') continue;
    busy += us;
    const place = locate(node.callFrame, root, cache);
    const key = `${name}@${place.where || place.file}`;
    const entry = functions.get(key) ?? { name, where: place.where, us: 0 };
    entry.us += us;
    functions.set(key, entry);
    files.set(place.file, (files.get(place.file) ?? 0) + us);
    groups.set(place.group, (groups.get(place.group) ?? 0) + us);
  }
  const ranked = (entries: Array<{ name: string; where: string; us: number }>): SelfTime[] =>
    entries
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((e) => ({ name: e.name, where: e.where, self_ms: e.us / 1000, share: busy > 0 ? e.us / busy : 0 }));
  return {
    window_ms: (to - from) / 1000,
    busy_ms: busy / 1000,
    samples,
    functions: ranked([...functions.values()]),
    files: ranked([...files].map(([name, us]) => ({ name, where: '', us }))),
    groups: ranked([...groups].map(([name, us]) => ({ name, where: '', us }))),
    inclusive_repo: ranked([...inclusiveRepo.values()]),
    inclusive_groups: ranked([...inclusiveGroups].map(([name, us]) => ({ name, where: '', us }))),
  };
}
