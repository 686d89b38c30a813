// The shape of docs/bench/results.json, and the targets the report checks.
import type { DecisionTiming } from './decision.ts';
import type { LoadResult, TtfbResult } from './load.ts';
import type { ProfileSummary } from './profile.ts';
import { median } from './stats.ts';

export const TARGETS = ['direct', 'proxy', 'tiergate'] as const;
export type TargetName = (typeof TARGETS)[number];
export type Mode = 'json' | 'sse';

export interface LoadCell {
  mode: Mode;
  connections: number;
  rounds: Record<TargetName, LoadResult[]>;
  median: Record<TargetName, LoadResult>;
}

export interface TtfbCell {
  rounds: Record<TargetName, TtfbResult[]>;
  median: Record<TargetName, TtfbResult>;
}

export interface ScaleRow {
  label: string;
  rules: number | null;
  routes: number | null;
  rounds: LoadResult[];
  median: LoadResult;
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
    gateway_warm_s: number;
    warm_requests: number;
    scale_duration_s: number;
    scale_warm_s: number;
    rounds: number;
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
  targets: TargetCheck[];
}

/** Field-by-field median of rounds. */
export function medianOf<T extends object>(rounds: readonly T[]): T {
  const out = {} as Record<string, number>;
  for (const key of Object.keys(rounds[0]) as Array<keyof T & string>) out[key] = median(rounds.map((r) => r[key] as unknown as number));
  return out as unknown as T;
}
