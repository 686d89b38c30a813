// The functions tiergate adds to JSONata (documented in the README). Their own module
// because both the compiler (compile.ts registers them, and knows their names to catch
// a misspelt call) and the fast path (fast-path.ts calls them without JSONata) need
// them, and neither may import the other both ways.
import type { ChatMessage } from '../plugin-contract/plugin-api.ts';
import { estimateMessagesTokens, estimateTextTokens, lastUserMessage, messageText } from '../plugin-contract/tokens.ts';

interface FunctionFocus {
  environment: { lookup(name: string): unknown };
}

/** The root input of the evaluation (`$$`), for functions that default to the whole request. */
function rootOf(focus: FunctionFocus): Record<string, unknown> {
  const root = focus.environment.lookup('$');
  return root !== null && typeof root === 'object' ? (root as Record<string, unknown>) : {};
}

function messagesOf(focus: FunctionFocus): ChatMessage[] {
  const messages = rootOf(focus).messages;
  return Array.isArray(messages) ? (messages as ChatMessage[]) : [];
}

function textOf(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value))
    return value.map((v) => (v && typeof v === 'object' && 'content' in v ? messageText((v as ChatMessage).content) : textOf(v))).join('\n');
  if (value === undefined || value === null) return '';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

const CODE_PATTERN = /```|^\s{4}\S|\b(def|function|class|import|return|const|let|var|public|static)\b[^\n]*[({=;:]/m;

interface CustomFunction {
  signature: string;
  implementation: (this: FunctionFocus, ...args: never[]) => unknown;
  help: string;
}

/** Functions tiergate adds to JSONata for common routing needs. Documented in the README. */
export const CUSTOM_FUNCTIONS: Record<string, CustomFunction> = {
  estimateTokens: {
    signature: '<x?:n>',
    help: 'estimated tokens of a string or messages array; of the whole conversation when called with no argument',
    implementation(this: FunctionFocus, value?: unknown) {
      if (value === undefined) return estimateMessagesTokens(messagesOf(this));
      if (Array.isArray(value) && value.every((m) => m && typeof m === 'object' && 'role' in m)) return estimateMessagesTokens(value as ChatMessage[]);
      return estimateTextTokens(textOf(value));
    },
  },
  lastUserMessage: {
    signature: '<:s>',
    help: 'text of the last user message',
    implementation(this: FunctionFocus) {
      return lastUserMessage(messagesOf(this));
    },
  },
  systemPrompt: {
    signature: '<:s>',
    help: 'text of the system (and developer) messages, joined',
    implementation(this: FunctionFocus) {
      return messagesOf(this)
        .filter((m) => m.role === 'system' || m.role === 'developer')
        .map((m) => messageText(m.content))
        .join('\n');
    },
  },
  conversationText: {
    signature: '<:s>',
    help: 'text of every message, joined',
    implementation(this: FunctionFocus) {
      return messagesOf(this)
        .map((m) => messageText(m.content))
        .join('\n');
    },
  },
  containsAny: {
    signature: '<s-a<s>:b>',
    help: 'true when the text contains any of the words or phrases, case-insensitively, on word boundaries',
    implementation(text?: string, words?: string[]) {
      if (!text || !words) return false;
      const lower = text.toLowerCase();
      return words.some((word) => {
        const w = word.toLowerCase();
        let at = lower.indexOf(w);
        while (at !== -1) {
          const before = at === 0 ? '' : lower[at - 1];
          const after = lower[at + w.length] ?? '';
          if (!/\w/.test(before) && !/\w/.test(after)) return true;
          at = lower.indexOf(w, at + 1);
        }
        return false;
      });
    },
  },
  wordCount: {
    signature: '<s-:n>',
    help: 'number of words in the text',
    implementation(text?: string) {
      return text ? text.split(/\s+/).filter(Boolean).length : 0;
    },
  },
  hasCode: {
    signature: '<s?:b>',
    help: 'true when the text (or the last user message) looks like it contains code',
    implementation(this: FunctionFocus, text?: string) {
      return CODE_PATTERN.test(text ?? lastUserMessage(messagesOf(this)));
    },
  },
};
