// Stage 6 of the policy compiler: the atomic swap. Before: compile.ts builds a Runtime
// (runtime.ts) from the file. Hot reload builds the new runtime aside (parse → validate →
// compile → create), then swaps one reference. Requests keep the runtime they started with; the old runtime is
// disposed when its last request ends. A failed build changes nothing but the status.
import { existsSync, readdirSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type winston from 'winston';
import { PolicyErrors, TiergateError, errorMessage } from '../common/errors.ts';
import { buildRuntime, type BuildOptions } from './compile.ts';
import type { Runtime } from './runtime.ts';
import { policyFingerprint } from './version.ts';
import { ModelHealth } from '../state/health.ts';
import { LocalCounters } from '../state/limits.ts';

export type ReloadTrigger = 'startup' | 'file' | 'plugin' | 'signal' | 'admin';

export interface ReloadResult {
  outcome: 'applied' | 'unchanged' | 'rejected';
  trigger: ReloadTrigger;
  policy_version: string;
  errors?: string[];
}

export interface ReloadStatus {
  policy_version: string;
  file: string;
  loaded_at: string;
  reloads: { applied: number; rejected: number; unchanged: number };
  last_reload: { at: string; trigger: ReloadTrigger; outcome: ReloadResult['outcome'] } | null;
  /** The errors of the last rejected reload, until a reload succeeds. */
  last_reload_error: string[] | null;
}

export interface ManagerOptions extends BuildOptions {
  /** Quiet period after a file change before reloading (editors write in bursts). */
  debounceMs?: number;
}

export class RuntimeManager {
  private current: Runtime;
  private queue: Promise<unknown> = Promise.resolve();
  private watchers: FSWatcher[] = [];
  private debounce: NodeJS.Timeout | null = null;
  private pendingTrigger: ReloadTrigger = 'file';
  private closed = false;
  private readonly counts = { applied: 0, rejected: 0, unchanged: 0 };
  private lastReload: ReloadStatus['last_reload'] = null;
  private lastError: string[] | null = null;
  private readonly listeners = new Set<(result: ReloadResult) => void>();

  private constructor(
    readonly configFile: string,
    initial: Runtime,
    private readonly options: ManagerOptions,
  ) {
    this.current = initial;
  }

  /** Builds the first runtime; throws PolicyErrors when the policy is invalid. */
  static async start(configFile: string, options: ManagerOptions): Promise<RuntimeManager> {
    const file = path.resolve(configFile);
    // One health record for every runtime this manager builds: a reload must not put a
    // failing model back into rotation. Likewise the per-key limit counts of this process.
    const shared: ManagerOptions = { ...options, health: options.health ?? new ModelHealth(), limitCounters: options.limitCounters ?? new LocalCounters() };
    return new RuntimeManager(file, await buildRuntime(file, shared), shared);
  }

  get runtime(): Runtime {
    return this.current;
  }

  /** The runtime a new request uses; pair with `runtime.leave()` when the request ends. */
  acquire(): Runtime {
    const runtime = this.current;
    runtime.enter();
    return runtime;
  }

  onReload(listener: (result: ReloadResult) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  status(): ReloadStatus {
    return {
      policy_version: this.current.version,
      file: this.current.file,
      loaded_at: this.current.loadedAt.toISOString(),
      reloads: { ...this.counts },
      last_reload: this.lastReload,
      last_reload_error: this.lastError,
    };
  }

  /** Reloads now. Reloads run one at a time, in order. */
  reload(trigger: ReloadTrigger): Promise<ReloadResult> {
    const next = this.queue.then(() => this.reloadNow(trigger));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async reloadNow(trigger: ReloadTrigger): Promise<ReloadResult> {
    if (this.closed) return { outcome: 'unchanged', trigger, policy_version: this.current.version };
    const { logger } = this.options;
    let result: ReloadResult;
    try {
      if (policyFingerprint(this.configFile, this.options, this.current.watchFiles) === this.current.version) {
        // What is on disk is what serves (say, a broken edit was reverted): no error stands.
        this.lastError = null;
        result = { outcome: 'unchanged', trigger, policy_version: this.current.version };
      } else {
        const next = await buildRuntime(this.configFile, this.options);
        if (this.closed) {
          await next.dispose();
          return { outcome: 'unchanged', trigger, policy_version: this.current.version };
        }
        const previous = this.current;
        this.current = next;
        void previous.retire();
        this.lastError = null;
        result = { outcome: 'applied', trigger, policy_version: next.version };
        logger.info('policy reloaded', { trigger, policy_version: next.version, previous_version: previous.version });
        if (this.watchers.length > 0 && [...next.watchPaths, ...next.watchFiles].join('\n') !== [...previous.watchPaths, ...previous.watchFiles].join('\n'))
          this.watch();
      }
    } catch (err) {
      const errors = err instanceof PolicyErrors ? err.errors.map((e) => e.located()) : [err instanceof TiergateError ? err.located() : errorMessage(err)];
      this.lastError = errors;
      result = { outcome: 'rejected', trigger, policy_version: this.current.version, errors };
      logger.error('policy reload rejected; the previous policy keeps serving', { trigger, policy_version: this.current.version, errors });
    }
    this.counts[result.outcome]++;
    this.lastReload = { at: new Date().toISOString(), trigger, outcome: result.outcome };
    for (const listener of this.listeners) listener(result);
    return result;
  }

  /** Watches the policy file and every plugin folder; changes reload after a quiet period. */
  watch(): void {
    this.unwatch();
    const schedule = (trigger: ReloadTrigger) => {
      if (this.closed) return;
      this.pendingTrigger = trigger;
      if (this.debounce) clearTimeout(this.debounce);
      this.debounce = setTimeout(() => {
        this.debounce = null;
        void this.reload(this.pendingTrigger);
      }, this.options.debounceMs ?? 150);
    };
    const [configFile, ...pluginRoots] = this.current.watchPaths;
    // Watch the folder, not the file: editors replace the file on save, which ends a
    // watch on the file itself.
    const configName = path.basename(configFile);
    // Kubernetes mounts a ConfigMap through symlinks and updates it by swapping the
    // `..data` link, so the event names that link, never the file.
    this.addWatcher(path.dirname(configFile), (name) => {
      if (name === null || name === configName || name.startsWith('..')) schedule('file');
    });
    for (const root of pluginRoots) this.watchTree(root, () => schedule('plugin'));
    // Files plugins read (model artifacts): watched through their folder, like the policy.
    const byFolder = new Map<string, Set<string>>();
    for (const file of this.current.watchFiles) {
      const names = byFolder.get(path.dirname(file)) ?? new Set<string>();
      names.add(path.basename(file));
      byFolder.set(path.dirname(file), names);
    }
    for (const [folder, names] of byFolder) {
      this.addWatcher(folder, (name) => {
        if (name === null || names.has(name) || name.startsWith('..')) schedule('file');
      });
    }
  }

  private addWatcher(folder: string, onChange: (name: string | null) => void): FSWatcher | null {
    try {
      const watcher = watch(folder, { persistent: false }, (_event, name) => onChange(name === null ? null : String(name)));
      watcher.on('error', (err) => this.options.logger.warn('file watch failed; use POST /admin/reload or SIGHUP', { folder, error: errorMessage(err) }));
      this.watchers.push(watcher);
      return watcher;
    } catch (err) {
      this.options.logger.warn('cannot watch folder; use POST /admin/reload or SIGHUP', { folder, error: errorMessage(err) });
      return null;
    }
  }

  /**
   * A plugin folder and every folder under it, each watched as a folder: its entries'
   * events come by name, so a file replaced by a rename (an editor's safe save, `sed -i`,
   * `git checkout`) or deleted and created again stays watched. Node's recursive watch on
   * Linux follows each file's inode and lost such a file; chokidar 4 (the last for Node
   * 20.18) loses one deleted and created again. A folder that appears is watched from the
   * event that shows it; one that goes away is let go.
   */
  private watchTree(root: string, onChange: () => void): void {
    const folders = new Map<string, FSWatcher>();
    const refresh = () => {
      for (const [folder, watcher] of folders) {
        if (existsSync(folder)) continue;
        watcher.close();
        folders.delete(folder);
        this.watchers = this.watchers.filter((w) => w !== watcher);
      }
      watchFolder(root);
    };
    const watchFolder = (folder: string) => {
      if (!folders.has(folder)) {
        const watcher = this.addWatcher(folder, () => {
          refresh();
          onChange();
        });
        if (!watcher) return;
        folders.set(folder, watcher);
      }
      let entries;
      try {
        entries = readdirSync(folder, { withFileTypes: true });
      } catch {
        return; // gone meanwhile: the next event lets it go
      }
      for (const entry of entries) if (entry.isDirectory()) watchFolder(path.join(folder, entry.name));
    };
    watchFolder(root);
  }

  private unwatch(): void {
    for (const watcher of this.watchers) watcher.close();
    this.watchers = [];
  }

  /** Stops watching and disposes the current runtime once its requests have ended. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unwatch();
    if (this.debounce) clearTimeout(this.debounce);
    await this.queue;
    await this.current.retire();
  }
}

export type { winston };
