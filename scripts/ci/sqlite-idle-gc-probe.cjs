// Run by scripts/ci/node24.sh on the better-sqlite3 it compiled for Node 24. better-sqlite3 12 compiled
// against Node 24.19+ headers aborts the process (SIGABRT, "Assertion failed: (env) != nullptr") when V8
// finalizes an unreferenced Statement outside JavaScript, as its idle-time garbage collection does: the
// server would die between requests, and a test run notices only now and then. This makes that happen
// within seconds, so an addon built against the wrong headers fails the step every time.
const Database = require('better-sqlite3');

const ROUNDS = 20;
const db = new Database(':memory:');
let round = 0;

function burst() {
  for (let i = 0; i < 5000; i += 1) db.prepare('SELECT ?').get(i);
  // Garbage beside the statements, so the heap grows enough for V8 to collect while the loop is idle.
  const garbage = [];
  for (let i = 0; i < 200_000; i += 1) garbage.push({ i, text: `row ${i}` });
  round += 1;
  if (round < ROUNDS) {
    setTimeout(burst, 300);
    return;
  }
  db.close();
  process.stdout.write(`node24: ${ROUNDS * 5000} statements left to the garbage collector on ${process.version}, no abort (${require.resolve('better-sqlite3')})\n`);
}

burst();
