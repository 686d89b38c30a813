// The decision log: one JSON line per request, the raw material of every routing
// metric (cost saved, escalation rate, quality retention). Written through winston so a
// team can add transports, but each line is the bare record and nothing else.
import { close as closeFd, mkdirSync, open, write } from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import winston from 'winston';
import { DEFAULT_DECISION_LOG } from '../policy-shape/defaults.ts';
import type { Usage } from '../plugin-contract/plugin-api.ts';

// The records of one request's model calls and gate verdicts belong to the decision
// record: the pipeline fills them in, the log, metrics and reports read them.

export type AttemptRole = 'routed' | 'escalation' | 'fallback' | 'speculative';

export interface EvaluatorResult {
  name: string;
  score: number | null;
  weight: number;
  threshold: number | null;
  skipped?: boolean;
  error?: string;
  details?: Record<string, unknown>;
}

export interface GateResult {
  score: number | null;
  passed: boolean;
  threshold: number;
  evaluators: EvaluatorResult[];
  /** What the evaluators' own model calls (an LLM judge) cost. */
  cost_usd: number;
  latency_ms: number;
  /**
   * Set when gate.decide: cascade judged the answer (a tier below the top): the prior
   * the router gave (0.5 when it gave none, or for a tier climbed to), the posterior of
   * prior and score, and the break-even u / (u + o) the posterior had to reach. `passed`
   * is then posterior >= break_even (and each evaluator's own threshold), not score >= threshold.
   */
  decide?: 'cascade';
  prior?: number;
  posterior?: number;
  break_even?: number;
}

export interface AttemptRecord {
  model: string;
  tier: string | null;
  role: AttemptRole;
  /** Milliseconds after the request arrived. */
  started_ms: number;
  latency_ms: number;
  outcome: 'ok' | 'failed' | 'aborted' | 'skipped_cooldown';
  retries: number;
  error_code?: string;
  error?: string;
  usage?: Usage;
  usage_estimated?: boolean;
  cost_usd: number;
  gate?: GateResult;
}

export interface DecisionRecord {
  request_id: string;
  timestamp: string;
  route: string | null;
  request_features: Record<string, unknown>;
  /** Where the router sent the request first (routing accuracy is judged on this). */
  routed_model: string | null;
  routed_tier: string | null;
  /** The model whose answer was served, and its tier. */
  selected_model: string | null;
  tier: string | null;
  alternative_models: string[];
  confidence: number | null;
  routing_reason: string;
  /** The name of the gateway key (server.auth.keys) the request came with; absent without keys. */
  api_key_name?: string;
  /** Set when routing failed and the route default applied: the failure's code (TG_ERR_EXPRESSION_LIMIT, TG_ERR_ROUTING …). */
  routing_error?: string;
  latency_ms: number;
  upstream_latency_ms: number | null;
  stream: boolean;
  /** Tokens of the served answer. */
  usage: Usage | null;
  usage_estimated?: boolean;
  /** Of usage.prompt_tokens, those read from / written to the prompt cache (priced apart); absent when none. */
  cached_input_tokens?: number;
  cache_write_input_tokens?: number;
  /** Of usage.completion_tokens, those spent reasoning (priced as output); absent when none. */
  reasoning_tokens?: number;
  /** Everything the request cost: every attempt, aborted speculative calls, judge calls. */
  cost_usd: number | null;
  /** The route's always-best model, and what it would have cost for the same tokens. */
  best_model: string | null;
  best_cost_usd: number | null;
  cost_saved_usd: number | null;
  policy_version: string;
  was_escalated: boolean;
  /** Tier climbs after failed gates (or failed tiers), fallback included. */
  escalations: number;
  /**
   * passed / failed (the best answer was served anyway) / none (no gate) / bypass (streamed,
   * gated for analytics) / refused (on_fail: refuse, of the answers or of the input checks:
   * nothing was served; error_code says which).
   */
  gate: 'passed' | 'failed' | 'none' | 'bypass' | 'refused';
  /** The verdict of the route's gate.input_checks on the request, when it has them. */
  input_check?: GateResult;
  quality_score: number | null;
  speculated: boolean;
  attempts: AttemptRecord[];
  simulated: boolean;
  status: 'ok' | 'error' | 'client_closed';
  error_code?: string;
  prompt?: unknown;
  /** Sampled for shadow evaluation: a `kind: "shadow"` line with the same request_id follows. */
  shadowed?: boolean;
  /** Set when part of the line could not be written as JSON: why; that part is replaced by a note (lineOf). */
  serialization_error?: string;
  /** The API the request came through, when not chat: embeddings (POST /v1/embeddings), which no router decides. */
  endpoint?: 'embeddings';
}

/**
 * Shadow evaluation (src/pipeline/shadow.ts): the served answer against the always-best model's
 * answer to the same request, both scored by the route's gate. Written after the
 * request's decision line; decision lines have no `kind`.
 */
export interface ShadowRecord {
  kind: 'shadow';
  request_id: string;
  route: string;
  served_model: string;
  served_tier: string | null;
  /** The gate score the served answer got in the request. */
  served_quality: number | null;
  best_model: string;
  best_tier: string | null;
  /** The gate score of the best model's answer; null when the shadow call failed. */
  best_quality: number | null;
  best_passed: boolean | null;
  /** The best model's call and its gate's judge calls; null when the call failed. */
  shadow_cost_usd: number | null;
  latency_ms: number;
  simulated: boolean;
  status: 'ok' | 'error';
  error_code?: string;
  error?: string;
  policy_version: string;
  timestamp: string;
}

/** A score posted to POST /v1/feedback for an earlier decision (src/pipeline/feedback.ts). */
export interface FeedbackRecord {
  kind: 'feedback';
  request_id: string;
  route: string | null;
  score: number;
  timestamp: string;
}

export interface DecisionLogSettings {
  file: string | null;
  console: boolean;
  /**
   * How long a line may wait in memory to leave with later ones (the file alone, no
   * console): one write(2) per interval instead of one per request. 0: each event-loop
   * turn's lines are written at once.
   */
  flushMs?: number;
}

/** The default `flush_ms` (the schema's): at one request at a time, a write per request was ~10 % of the main thread (docs/bench/profile-findings.md, item 20). */
const DEFAULT_FLUSH_MS = DEFAULT_DECISION_LOG.flush_ms;

const RECORD = Symbol('decision');

/** Levels of a line written as they are when the line as a whole cannot be (lineOf): anything deeper becomes a note. */
const MAX_LOGGED_DEPTH = 64;

/**
 * The line's JSON text, whatever the record holds. A value JSON.stringify cannot write
 * (nested too deep for its recursion, a cycle, a BigInt, a throwing toJSON: from a
 * prompt, a feature, a plugin's details) would otherwise lose the request's line, and
 * with it its metrics and its spend. Then the line is written without it: each such
 * value is replaced by a note, and `serialization_error` says why. Never throws.
 */
function lineOf(record: DecisionRecord | ShadowRecord | FeedbackRecord): string {
  try {
    return JSON.stringify(record);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    try {
      return JSON.stringify({ ...(loggable(record, 0, []) as object), serialization_error: reason });
    } catch {
      return JSON.stringify({ request_id: record.request_id, timestamp: record.timestamp, serialization_error: reason });
    }
  }
}

/** A copy of `value` that JSON.stringify can write: at most MAX_LOGGED_DEPTH levels, no cycles, no BigInt. */
function loggable(value: unknown, depth: number, ancestors: object[]): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object' || value === null) return value;
  if (depth >= MAX_LOGGED_DEPTH) return `[not logged: nested more than ${MAX_LOGGED_DEPTH} levels deep]`;
  if (ancestors.includes(value)) return '[not logged: circular]';
  ancestors.push(value);
  try {
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') return loggable(toJSON.call(value), depth, ancestors);
    if (Array.isArray(value)) return value.map((item) => loggable(item, depth + 1, ancestors));
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, loggable(item, depth + 1, ancestors)]));
  } catch (err) {
    return `[not logged: ${err instanceof Error ? err.message : String(err)}]`;
  } finally {
    ancestors.pop();
  }
}

export class DecisionLog {
  private readonly logger: winston.Logger | null;
  private fileTransport: winston.transports.FileTransportInstance | null = null;
  /**
   * The file alone (no console): the bytes winston's File transport writes (the record's
   * JSON and "\n", appended), written straight to the file. Through winston each line
   * crossed four streams (logger, format, transport, file) and was written with its own
   * write(2); a file stream still cost a buffered chunk and a Buffer per line. Here the
   * lines of a flush interval leave together as one string in one write(2) (LineAppender).
   */
  private readonly file: LineAppender | null = null;
  private closing: Promise<void> | null = null;

  /** `onError`: a write or close failed (disk full, file gone); the process must not die of it. */
  constructor(settings: DecisionLogSettings, baseDir: string, onError: (err: Error) => void = () => undefined) {
    const transports: winston.transport[] = [];
    if (settings.file && !settings.console) {
      const filename = path.resolve(baseDir, settings.file);
      mkdirSync(path.dirname(filename), { recursive: true });
      this.file = new LineAppender(filename, settings.flushMs ?? DEFAULT_FLUSH_MS, onError);
      this.logger = null;
      return;
    }
    if (settings.file) {
      const filename = path.resolve(baseDir, settings.file);
      mkdirSync(path.dirname(filename), { recursive: true });
      this.fileTransport = new winston.transports.File({ filename });
      transports.push(this.fileTransport);
    }
    if (settings.console) transports.push(new winston.transports.Console());
    this.logger = transports.length
      ? winston.createLogger({
          level: 'info',
          format: winston.format.printf((info) => (info as unknown as Record<symbol, string>)[RECORD]),
          transports,
        })
      : null;
    // winston re-emits a transport's error on the logger, where nobody listening means a crash.
    this.logger?.on('error', onError);
  }

  write(record: DecisionRecord | ShadowRecord | FeedbackRecord): void {
    if (this.closing) return;
    if (this.file) {
      this.file.write(`${lineOf(record)}\n`);
      return;
    }
    if (!this.logger) return;
    this.logger.log({ level: 'info', message: '', [RECORD]: lineOf(record) } as unknown as winston.LogEntry);
  }

  /**
   * Opens the file again by its name, for the lines from now on (SIGHUP, the convention of
   * logrotate's `postrotate`): after `mv decisions.jsonl …` the open descriptor still writes
   * to the moved file. Lines already waiting end in the moved file; none is lost. A file
   * that cannot be opened again goes to `onError`, and lines keep going where they went.
   * Resolves with whether the lines from now on go to the file under its name.
   */
  async reopen(): Promise<boolean> {
    if (this.closing) return false;
    if (this.file) return this.file.reopen();
    const logger = this.logger;
    const previous = this.fileTransport;
    if (!logger || !previous) return false;
    const fresh = new winston.transports.File({ filename: path.join(previous.dirname, previous.filename) });
    logger.add(fresh);
    logger.remove(previous);
    previous.close?.();
    this.fileTransport = fresh;
    return true;
  }

  /** Flushes and closes. Idempotent. */
  close(): Promise<void> {
    if (!this.closing && this.file) this.closing = this.file.close();
    if (!this.closing) {
      const logger = this.logger;
      const file = this.fileTransport;
      this.closing = (async () => {
        if (!logger) return;
        // winston's logger 'finish' fires before a file transport has flushed, so wait
        // for the transport itself.
        const flushed = file ? once(file, 'finish') : once(logger, 'finish');
        logger.end();
        // A transport that failed may never finish: closing must not hang or reject (a
        // retiring runtime and a shutdown wait on it).
        await Promise.race([flushed, once(logger, 'error').then(() => undefined)]).catch(() => undefined);
      })();
    }
    return this.closing;
  }
}

/** Waiting lines that are written at once, whatever the interval: a burst does not pile up in memory. */
const HIGH_WATER_CHARS = 256 * 1024;

/**
 * Appends lines to a file (opened with O_APPEND, so a replica's or an older runtime's
 * lines never overwrite these). A line waits up to `flushMs` to leave with the lines
 * after it in one write(2), or less once 256 K characters wait; lines written while a
 * write is in flight go in the next one. Why wait: each write is a hand-off to libuv's
 * thread pool and back, and at one request at a time that hand-off, not the bytes, was
 * the cost (docs/bench/profile-findings.md, item 20). close() writes everything at once.
 * Nothing is dropped unless the file fails: the first failure (cannot open, disk full, …)
 * goes to `onError` once and the appender takes no more lines, so a broken log never
 * takes the process down.
 */
class LineAppender {
  private fd: number | null = null;
  /** The file opened again (reopen()), taken in place of `fd` once no write is in flight. */
  private reopened: number | null = null;
  private failed = false;
  private closed = false;
  /** Closed for good: the file descriptor is released. */
  private ended = false;
  private writing = false;
  /** A flush is due: on the next turn (`immediate`) or when `timer` fires. */
  private immediate = false;
  private timer: NodeJS.Timeout | null = null;
  private pending: string[] = [];
  private pendingChars = 0;
  private readonly idle: Array<() => void> = [];

  constructor(
    private readonly filename: string,
    private readonly flushMs: number,
    private readonly onError: (err: Error) => void,
  ) {
    open(filename, 'a', (err, fd) => {
      if (err) return this.fail(err);
      if (this.failed) return closeFd(fd, () => undefined);
      this.fd = fd;
      this.takeReopened();
      this.schedule();
      this.settle();
    });
  }

  write(line: string): void {
    if (this.failed || this.closed) return;
    this.pending.push(line);
    this.pendingChars += line.length;
    this.schedule();
  }

  /** See DecisionLog.reopen(). */
  reopen(): Promise<boolean> {
    if (this.closed || this.failed) return Promise.resolve(false);
    return new Promise((resolve) => {
      open(this.filename, 'a', (err, fd) => {
        if (err) {
          this.onError(err);
          return resolve(false);
        }
        if (this.closed || this.failed) {
          closeFd(fd, () => undefined);
          return resolve(false);
        }
        if (this.reopened !== null) closeFd(this.reopened, () => undefined);
        this.reopened = fd;
        // Still opening the first time: the first open takes this one in.
        if (!this.writing && this.fd !== null) this.takeReopened();
        resolve(true);
      });
    });
  }

  private takeReopened(): void {
    if (this.reopened === null) return;
    const previous = this.fd;
    this.fd = this.reopened;
    this.reopened = null;
    if (previous !== null) closeFd(previous, () => undefined);
  }

  /** Resolves once every line written before it is in the file (or the file has failed) and the file is closed. Never rejects. */
  close(): Promise<void> {
    this.closed = true;
    this.cancelTimer();
    if (this.ended) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.idle.push(resolve);
      this.settle();
    });
  }

  private schedule(): void {
    if (this.immediate || this.writing || this.fd === null || this.pending.length === 0) return;
    if (this.flushMs > 0 && this.pendingChars < HIGH_WATER_CHARS) {
      this.timer ??= setTimeout(() => {
        this.timer = null;
        this.flush();
      }, this.flushMs);
      return;
    }
    this.cancelTimer();
    this.immediate = true;
    setImmediate(() => {
      this.immediate = false;
      this.flush();
    });
  }

  private cancelTimer(): void {
    if (this.timer === null) return;
    clearTimeout(this.timer);
    this.timer = null;
  }

  private flush(): void {
    this.cancelTimer();
    if (this.writing || this.fd === null || this.failed || this.pending.length === 0) return this.settle();
    const data = Buffer.from(this.pending.length === 1 ? this.pending[0] : this.pending.join(''));
    this.pending = [];
    this.pendingChars = 0;
    this.writing = true;
    this.writeAll(this.fd, data, 0);
  }

  private writeAll(fd: number, data: Buffer, offset: number): void {
    write(fd, data, offset, data.length - offset, null, (err, written) => {
      if (err) {
        this.writing = false;
        return this.fail(err);
      }
      // A short write (rare for a regular file): the rest goes next, before any newer line.
      if (offset + written < data.length) return this.writeAll(fd, data, offset + written);
      this.writing = false;
      this.takeReopened();
      if (this.closed) return this.settle();
      this.schedule();
    });
  }

  private fail(err: Error): void {
    if (this.failed) return;
    this.failed = true;
    this.cancelTimer();
    if (this.reopened !== null) closeFd(this.reopened, () => undefined);
    this.reopened = null;
    this.pending = [];
    this.pendingChars = 0;
    this.onError(err);
    this.settle();
  }

  /** Once closing and nothing is left to write: close the file and tell the waiters. */
  private settle(): void {
    if (!this.closed || this.writing || this.idle.length === 0) return;
    if (!this.failed && this.fd === null) return; // still opening: the open's callback settles
    if (!this.failed && this.pending.length > 0) return this.flush();
    this.takeReopened();
    const waiters = this.idle.splice(0);
    const done = () => {
      this.ended = true;
      for (const resolve of waiters) resolve();
    };
    const fd = this.fd;
    this.fd = null;
    if (fd === null) return done();
    closeFd(fd, () => done());
  }
}
