// What the providers that translate OpenAI chat to another API share (gemini, bedrock):
// OpenAI's function tools read once, a tool call's arguments as the object the other API
// wants, and the words for a reply that is not what was expected.
import { clip } from './openai-wire.ts';
import type { ToolCall } from './plugin-api.ts';

/** An OpenAI function tool, read: its JSON Schema parameters always an object schema. */
export interface ToolDefinition {
  name: string;
  description?: string;
  parameters: Record<string, unknown>;
}

/** The request's function tools (other tool types have no equivalent upstream and are not sent). */
export function openAIToolDefinitions(tools: unknown): ToolDefinition[] {
  if (!Array.isArray(tools)) return [];
  const out: ToolDefinition[] = [];
  for (const tool of tools) {
    if (!isRecord(tool) || tool.type !== 'function' || !isRecord(tool.function) || typeof tool.function.name !== 'string') continue;
    const fn = tool.function;
    out.push({
      name: fn.name as string,
      ...(typeof fn.description === 'string' ? { description: fn.description } : {}),
      parameters: { type: 'object', properties: {}, ...(isRecord(fn.parameters) ? fn.parameters : {}) },
    });
  }
  return out;
}

/** OpenAI carries a tool call's arguments as a JSON string; other APIs want the object. Unparseable or non-object arguments become `{}`. */
export function toolCallArguments(call: ToolCall): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(call.function.arguments);
    return isRecord(parsed) ? parsed : {};
  } catch {
    return {};
  }
}

/** A short description of an unexpected value, for an error message. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (isRecord(value)) return `an object with keys ${Object.keys(value).slice(0, 8).join(', ') || '(none)'}`;
  return typeof value === 'string' ? `text: ${clip(value)}` : typeof value;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A token count an upstream reported; anything but a positive finite number counts as 0. */
export function tokenCount(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}
