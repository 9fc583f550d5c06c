// node-postgres contender for `python -m bench.pipeline`.
//
// Reads one JSON job on stdin: {url, op, sql, callers, calls, warmup, named, keys}: `sql` is
// the query of bench/contenders/sql.py with `$1` for its parameter, and keys
// are [id] (get_user_by_id) or [deployment id, project id, user id]
// (get_deployment_with_details). Runs `warmup` unrecorded calls, then `calls` calls shared
// by `callers` concurrent async callers on a pg.Pool of 8, checks every answer against its
// key, and prints one JSON object on stdout: ops_per_s, wrong, errors, examples.
// `named` sends named prepared statements ({name, text, values}); otherwise plain
// parameterized queries (an unnamed statement, parsed on every call).
import pg from "pg";

const DEPLOYMENT = ["id", "project_id", "app_sandbox_id", "public_url", "db_sandbox_id",
  "db_connection_info", "status", "runtime_type", "created_at", "updated_at"];
const PROJECT = ["id", "user_id", "name", "description", "created_at", "updated_at"];
const USER = ["id", "email", "password_hash", "plan_type", "created_at", "updated_at"];

function record(fields, values, start) {
  const out = {};
  fields.forEach((field, n) => { out[field] = values[start + n]; });
  return out;
}

// The joined row has three `id` columns, so it is read as an array and nested by position,
// as the Python contenders nest it into dataclasses.
function details(values) {
  const p = DEPLOYMENT.length;
  const u = p + PROJECT.length;
  return {
    deployment: record(DEPLOYMENT, values, 0),
    project: record(PROJECT, values, p),
    user: record(USER, values, u),
  };
}

function operation(op, sql, named) {
  if (op === "get_user_by_id") {
    return {
      query: (id) => (named
        ? { name: "get_user_by_id", text: sql, values: [id] }
        : { text: sql, values: [id] }),
      answer: (result) => result.rows[0] ?? null,
      problem: (user, key) => (user === null ? "no user" : user.id === key[0] ? null
        : `user ${user.id}`),
    };
  }
  if (op === "get_deployment_with_details") {
    return {
      query: (id) => (named
        ? { name: "get_deployment_with_details", text: sql,
          values: [id], rowMode: "array" }
        : { text: sql, values: [id], rowMode: "array" }),
      answer: (result) => (result.rows.length ? details(result.rows[0]) : null),
      problem: (d, key) => {
        if (d === null) return "no deployment";
        const got = [d.deployment.id, d.project.id, d.project.user_id, d.user.id];
        const want = [key[0], key[1], key[2], key[2]];
        return got.every((v, n) => v === want[n]) ? null : `got ${got.join("/")}`;
      },
    };
  }
  throw new Error(`unknown op ${op}`);
}

async function burst(pool, op, keys, callers, calls, offset, tally) {
  let next = 0;
  async function caller() {
    for (;;) {
      const n = next++;
      if (n >= calls) return;
      const key = keys[(offset + n) % keys.length];
      try {
        const result = await pool.query(op.query(key[0]));
        const problem = op.problem(op.answer(result), key);
        if (problem !== null) {
          tally.wrong += 1;
          if (tally.examples.length < 5) tally.examples.push(`${key[0]}: ${problem}`);
        }
      } catch (err) {
        tally.errors += 1;
        if (tally.examples.length < 5) tally.examples.push(`${key[0]}: ${err.message}`);
      }
    }
  }
  await Promise.all(Array.from({ length: callers }, caller));
}

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const job = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const op = operation(job.op, job.sql, job.named);
  const pool = new pg.Pool({ connectionString: job.url, max: 8 });
  const tally = { wrong: 0, errors: 0, examples: [] };
  try {
    // Warm-up: every pooled connection connected (and, when named, every statement
    // prepared on it) before the clock starts; its answers are checked too.
    await burst(pool, op, job.keys, job.callers, job.warmup, 0, tally);
    const start = process.hrtime.bigint();
    await burst(pool, op, job.keys, job.callers, job.calls, job.warmup, tally);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    process.stdout.write(JSON.stringify({
      ops_per_s: job.calls / seconds,
      seconds,
      wrong: tally.wrong,
      errors: tally.errors,
      examples: tally.examples,
      node: process.version,
    }) + "\n");
  } finally {
    await pool.end();
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
