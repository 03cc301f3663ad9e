/**
 * DynamoDB on loopback: dynalite (the real DynamoDB wire protocol and validation), in memory or in a directory,
 * with the ledger, idempotency and circuit tables created as the stack declares them.
 */
import dynalite from 'dynalite';
import { DynamoDb, DynamoError } from '../../shared/aws/dynamodb.ts';
import { createTableInputs } from '../../shared/aws/tables.ts';
import { listenOnLoopback } from '../listen.ts';

export const LOCAL_TABLES = {
  ledger: 'cancellations-ledger',
  idempotency: 'cancellations-idempotency',
  circuits: 'cancellations-circuits',
} as const;

export interface LocalDynamo {
  url: string;
  tables: typeof LOCAL_TABLES;
  stop(): Promise<void>;
}

export async function startLocalDynamo(options: { path?: string; port?: number } = {}): Promise<LocalDynamo> {
  const server = dynalite({
    createTableMs: 0,
    deleteTableMs: 0,
    updateTableMs: 0,
    ...(options.path ? { path: options.path } : {}),
  });
  const { url, close } = await listenOnLoopback(server, options.port);
  const db = new DynamoDb({ endpoint: url });
  for (const input of createTableInputs(LOCAL_TABLES)) {
    await db.call('CreateTable', input).catch((error) => {
      // Tables kept in a directory survive restarts.
      if (!(error instanceof DynamoError && error.type === 'ResourceInUseException')) throw error;
    });
  }
  return {
    url,
    tables: LOCAL_TABLES,
    stop: close,
  };
}
