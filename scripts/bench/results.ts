// The shape of docs/bench/results.json, and the targets the report checks.
import type { DecisionTiming } from './decision.ts';
import type { LoadResult, TtfbResult } from './load.ts';
import type { ProfileSummary } from './profile.ts';
import type { WarmReport, WarmSettings } from './warm.ts';
import { median } from './stats.ts';

export const TARGETS = ['direct', 'proxy', 'tiergate'] as const;
export type TargetName = (typeof TARGETS)[number];
export type Mode = 'json' | 'sse';

export interface LoadCell {
  mode: Mode;
  connections: number;
  /** Every round set run, disturbed ones included. */
  rounds: Record<TargetName, LoadResult[]>;
  /** The round sets the medians are of (indices into `rounds`); absent before round 6: all of them. */
  used?: number[];
  median: Record<TargetName, LoadResult>;
}

export interface TtfbCell {
  rounds: Record<TargetName, TtfbResult[]>;
  used?: number[];
  median: Record<TargetName, TtfbResult>;
}

/**
 * A round set (direct, proxy, tiergate in turn) during which other processes and the
 * hypervisor's steal took more than this many cores of the 2 is run again: at one
 * connection a request's latency is its CPU, and on a quiet machine both stay under
 * ~0.1 cores, while a busy host took 0.5–0.6 and tripled even the direct p50.
 */
export const DISTURBED_CORES = 0.25;

export interface Disturbable {
  foreign_cpu: number;
  /** Absent from results written before the steal column. */
  stolen_cpu?: number;
}

/** The cores the machine did not give the benchmark during a run: other processes plus steal. */
export function disturbanceOf(run: Disturbable): number {
  return run.foreign_cpu + (run.stolen_cpu ?? 0);
}

/** A round set's disturbance: its most disturbed run's. */
export function setDisturbance(rounds: Record<TargetName, readonly Disturbable[]>, set: number): number {
  return Math.max(...TARGETS.map((t) => disturbanceOf(rounds[t][set])));
}

/** The `count` least disturbed round sets, in the order they ran; chosen by disturbance alone, never by result. */
export function leastDisturbed(rounds: Record<TargetName, readonly Disturbable[]>, count: number): number[] {
  const sets = rounds.direct.map((_, set) => ({ set, disturbance: setDisturbance(rounds, set) }));
  return sets
    .sort((a, b) => a.disturbance - b.disturbance || a.set - b.set)
    .slice(0, count)
    .map((s) => s.set)
    .sort((a, b) => a - b);
}

/** Medians of each target over the round sets `used`. */
export function mediansOver<R extends object>(rounds: Record<TargetName, R[]>, used: readonly number[]): Record<TargetName, R> {
  return Object.fromEntries(TARGETS.map((t) => [t, medianOf(used.map((set) => rounds[t][set]))])) as Record<TargetName, R>;
}

export interface ScaleRow {
  label: string;
  rules: number | null;
  routes: number | null;
  rounds: LoadResult[];
  median: LoadResult;
  /** Its own warm-up; null when its server was warm already (absent before round 6). */
  warm?: WarmReport | null;
}

export interface Piece {
  name: string;
  cpu_us_per_call: number;
  calls_per_s: number | null;
}

export interface TargetCheck {
  name: string;
  target: string;
  measured: string;
  pass: boolean;
}

/** One checkout's cold starts (scripts/bench/cold-start.ts), in milliseconds from spawning the process. */
export interface ColdStartTarget {
  label: string;
  root: string;
  /** To the first 200 on GET /readyz, every run. */
  ready_ms: number[];
  /** To the first 200 of a chat request sent once ready, every run. */
  first_chat_ms: number[];
  /** CPU time (user + system, every thread) the process had used when /readyz first answered 200. */
  ready_cpu_ms: number[];
  ready_cpu_p50_ms: number;
  ready_p50_ms: number;
  ready_p90_ms: number;
  first_chat_p50_ms: number;
  first_chat_p90_ms: number;
}

export interface ColdStartResults {
  runs: number;
  tsx_cache: boolean;
  node_flags: string[];
  load_average_at_start: number[];
  /** `node -e 0`, start to exit, once per round: the floor. */
  node_alone_ms: number[];
  node_alone_p50_ms: number;
  targets: ColdStartTarget[];
}

export interface BenchResults {
  meta: {
    date: string;
    commit: string;
    dirty: boolean;
    node: string;
    autocannon: string;
    cpu: string;
    cpus: number;
    pinned: boolean;
    placement: string;
    load_average_at_start: number[];
    quick: boolean;
    duration_s: number;
    scale_duration_s: number;
    /** Absent from runs before the settled warm-up (round 6), which warmed by a count of requests. */
    warm?: { targets: WarmSettings; one_cell: WarmSettings; cells: string[]; warmed: Record<TargetName, WarmReport> };
    gateway_warm_s?: number;
    warm_requests?: number;
    scale_warm_s?: number;
    rounds: number;
    /** Round sets run beyond `rounds` at most, in place of disturbed ones (absent before round 6). */
    extra_rounds?: number;
    ttfb_requests: number;
    wall_s: number;
  };
  load: LoadCell[];
  ttfb: TtfbCell;
  scale: ScaleRow[];
  decisions: DecisionTiming[];
  /** The HTTP layer alone under load (no upstream): node:http against express as tiergate uses it. */
  layers: ScaleRow[];
  /** Pieces of the request path in-process (scripts/bench/pieces.ts). */
  pieces: Piece[];
  profile: (ProfileSummary & { load: LoadResult; file: string }) | null;
  /** Absent from results written before the cold-start section (issue 15). */
  cold_start?: ColdStartResults;
  targets: TargetCheck[];
}

/** Field-by-field median of rounds. */
export function medianOf<T extends object>(rounds: readonly T[]): T {
  const out = {} as Record<string, number>;
  for (const key of Object.keys(rounds[0]) as Array<keyof T & string>) out[key] = median(rounds.map((r) => r[key] as unknown as number));
  return out as unknown as T;
}
