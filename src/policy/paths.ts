// Where a path really leads (used by schema.ts's "x-path" and by plugin discovery). A policy names files (plugin folders, model artifacts, state
// files, the decision log); each must stay inside the folders it may use, and `..` or a
// symbolic link must not lead it out. Paths are compared after resolving every link,
// including a dangling one at the end (writing through it would create its target).
import { lstatSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';

const MAX_LINKS = 40;

/** The path `p` resolves to once every symbolic link on it is followed; the missing tail is kept as written. */
export function resolveReal(p: string, depth = 0): string {
  const absolute = path.resolve(p);
  try {
    return realpathSync.native(absolute);
  } catch {
    // Missing, or a dangling link: resolve the parent, then look at the last segment.
  }
  const parent = path.dirname(absolute);
  if (parent === absolute || depth > MAX_LINKS) return absolute;
  const candidate = path.join(resolveReal(parent, depth + 1), path.basename(absolute));
  try {
    if (lstatSync(candidate).isSymbolicLink()) return resolveReal(path.resolve(path.dirname(candidate), readlinkSync(candidate)), depth + 1);
  } catch {
    // Does not exist: it is where it would be created.
  }
  return candidate;
}

export function isInside(child: string, folder: string): boolean {
  const relative = path.relative(folder, child);
  return relative === '' || (!relative.startsWith('..' + path.sep) && relative !== '..' && !path.isAbsolute(relative));
}

/**
 * null when `file` (absolute) stays inside one of `folders` once links are resolved;
 * otherwise why not, as a phrase to be followed by the folder: "leads through a symbolic link to /x, outside".
 */
export function escapesFolders(file: string, folders: readonly string[]): string | null {
  const real = resolveReal(file);
  if (folders.some((folder) => isInside(real, resolveReal(folder)))) return null;
  const lexicallyInside = folders.some((folder) => isInside(path.resolve(file), path.resolve(folder)));
  return lexicallyInside ? `leads through a symbolic link to ${real}, outside` : `resolves to ${real}, outside`;
}
