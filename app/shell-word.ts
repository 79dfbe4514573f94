/** Text a person pastes into a shell: each value as one word, quoted only when it has to be. */

/** `value` as one shell word: as it is when that is safe, else single-quoted. */
export function shellWord(value: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/** A path as one shell word; a leading `~/` stays outside the quotes so that the shell still expands it. */
export function shellPath(file: string): string {
  const home = file.startsWith('~/') ? '~/' : '';
  return `${home}${shellWord(file.slice(home.length))}`;
}
