import { openDatabase } from './db.js';
import { createStore, type Store } from './instances-repo.js';

export type { Store } from './instances-repo.js';

/** Opens (creating folder, WAL, migrations) the database at `file` and returns the repositories. */
export function openStore(file: string): Store {
  return createStore(openDatabase(file));
}
