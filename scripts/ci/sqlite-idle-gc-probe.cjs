// Run by .ci/run on each Node a user may take (the newest 24, 24.21.0 that `npx node@24` serves, the newest
// 26), on better-sqlite3 as a plain `npm ci` installs it. better-sqlite3 12 compiled against Node 24.19+
// headers aborts the process (SIGABRT, "Assertion failed: (env) != nullptr") when V8 finalizes an
// unreferenced Statement outside JavaScript, as its idle-time garbage collection does: the server would
// die between requests, and a test run notices only now and then. This makes that happen within seconds,
// so an addon that would abort fails the step every time.
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
  process.stdout.write(`sqlite-idle-gc-probe: ${ROUNDS * 5000} statements left to the garbage collector on ${process.version}, no abort (${require.resolve('better-sqlite3')})\n`);
}

burst();
