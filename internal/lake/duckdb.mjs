// Runs the SQL read from standard input on an in-memory DuckDB
// (@duckdb/node-api, loaded from the folder in CEBULK_DUCKDB) and prints
// {"columns":[…],"types":[…],"rows":[[…]…]} on standard output.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = process.env.CEBULK_DUCKDB;
const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
const { DuckDBInstance } = await import(pathToFileURL(join(dir, pkg.main ?? 'lib/index.js')).href);
const sql = readFileSync(0, 'utf8');
const db = await DuckDBInstance.create(':memory:');
const conn = await db.connect();
const res = await conn.runAndReadAll(sql);
process.stdout.write(JSON.stringify({
  columns: res.columnNames(),
  types: res.columnTypes().map((t) => t.toString()),
  rows: res.getRowsJson(),
}));
