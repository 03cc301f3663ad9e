/**
 * Memory stand-ins for the project's DynamoDB tables are chosen explicitly (the tests, a script that runs the
 * handlers in one process), never taken as a fallback: a function deployed without LEDGER_TABLE or IDEMPOTENCY_TABLE
 * fails on its first use of the table with a message naming the variable, instead of quietly keeping its audit trail
 * and idempotency records in one container's memory, where they vanish with it.
 */
import { ConfigurationError } from '#shared/core/errors.ts';

let chosen = false;

/** Chooses (or, with false, gives up) memory stand-ins for the tables whose variables are not set. */
export function useMemoryStandIns(choose = true): void {
  chosen = choose;
}

/** The table a variable names; undefined when it is unset and stand-ins were chosen; else a ConfigurationError. */
export function tableNamed(variable: string, what: string): string | undefined {
  const table = process.env[variable];
  if (table) return table;
  if (chosen) return undefined;
  throw new ConfigurationError(
    `${variable} is not set, so ${what} has no table: the stack sets it on every function that uses it (npm start's containers get it from the local cloud)`,
  );
}
