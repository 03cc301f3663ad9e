/**
 * Memory stand-ins for the project's DynamoDB tables are chosen explicitly (the tests, a script that runs the
 * handlers in one process), never taken as a fallback: a function deployed without LEDGER_TABLE or IDEMPOTENCY_TABLE
 * fails its cold start with a message naming the variable (shared/config.ts `needs`), instead of quietly keeping
 * its audit trail and idempotency records in one container's memory, where they vanish with it.
 */
export { useMemoryStandIns } from '#shared/config.ts';
