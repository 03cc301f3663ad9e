/**
 * DynamoDB on loopback: dynalite (the real DynamoDB wire protocol and validation), in memory or in a directory,
 * in a process of its own, with the ledger, idempotency, rate budget and circuit tables created as the stack declares
 * them.
 */
import { fork } from 'node:child_process';
import { DynamoDb, DynamoError } from '#shared/aws/dynamodb.ts';
import { createTableInputs } from '#shared/aws/tables.ts';

export const LOCAL_TABLES = {
  ledger: 'cancellations-ledger',
  idempotency: 'cancellations-idempotency',
  rateBudget: 'cancellations-rate-budget',
  circuits: 'cancellations-circuits',
} as const;

export interface LocalDynamo {
  url: string;
  tables: typeof LOCAL_TABLES;
  stop(): Promise<void>;
}

/** `nice`: a nice value for the process (benchmarks: below the provider simulators). */
export async function startLocalDynamo(
  options: { path?: string; port?: number; nice?: number } = {},
): Promise<LocalDynamo> {
  const child = fork(
    new URL('./dynamodb-process.ts', import.meta.url),
    [options.path ?? '', String(options.port ?? 0), String(options.nice ?? 0)],
    {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (m: { url: string }) => resolve(m.url));
    child.once('exit', (code) => reject(new Error(`local DynamoDB (dynalite) exited (code ${code}) before listening`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const close = async () => {
    if (child.exitCode === null) child.kill();
    await exited;
  };
  const db = new DynamoDb({ endpoint: url });
  for (const input of createTableInputs(LOCAL_TABLES)) {
    await db.call('CreateTable', input).catch((error) => {
      // Tables kept in a directory survive restarts.
      if (!(error instanceof DynamoError && error.type === 'ResourceInUseException')) throw error;
    });
  }
  // As a deployment waits for its tables: a call to a table still CREATING is refused (ResourceNotFoundException),
  // in DynamoDB and in dynalite, even with its creation delay at 0.
  const giveUpAt = Date.now() + 10_000;
  for (const name of Object.values(LOCAL_TABLES)) {
    for (;;) {
      const { Table } = await db.call<{ Table?: { TableStatus?: string } }>('DescribeTable', { TableName: name });
      if (Table?.TableStatus === 'ACTIVE') break;
      if (Date.now() > giveUpAt) {
        await close();
        throw new Error(`local DynamoDB (dynalite): table ${name} still ${Table?.TableStatus ?? 'missing'} after 10 s`);
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
  return {
    url,
    tables: LOCAL_TABLES,
    stop: close,
  };
}
