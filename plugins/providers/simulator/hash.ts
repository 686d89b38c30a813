// FNV-1a, 32-bit: the simulator's one source of "randomness". Stable across runs and
// platforms, which Math.random and object identity are not; a salt gives independent
// draws from one text.
export function fnv1a(text: string, salt = ''): number {
  let h = 0x811c9dc5;
  const input = salt + '\u0000' + text;
  for (let i = 0; i < input.length; i++) {
    h ^= input.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
