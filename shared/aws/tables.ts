/** The DynamoDB tables' keys, one definition for the CDK stack, the local tables and the code that reads them. */
export const LEDGER_TABLE = {
  partitionKey: 'pk',
  sortKey: 'sk',
  /** Every outcome of one credit application, in time order. */
  byCreditApplication: { indexName: 'byCreditApplication', partitionKey: 'creditApplicationId', sortKey: 'at' },
  /** Every outcome of one batch execution: its progress while it runs (only what progress counts is projected). */
  byExecution: {
    indexName: 'byExecution',
    partitionKey: 'executionId',
    sortKey: 'at',
    projected: ['provider', 'outcome'],
  },
} as const;

export const IDEMPOTENCY_TABLE = {
  partitionKey: 'id',
  /** Epoch seconds after which DynamoDB may delete the record (TTL). */
  ttlAttribute: 'expiration',
} as const;

/** Each shared provider budget's next free request slot (shared/aws/rate-budget.ts). */
export const RATE_BUDGET_TABLE = { partitionKey: 'pk' } as const;
/** One item per provider: its circuit (shared/core/circuit.ts). */
export const CIRCUIT_TABLE = { partitionKey: 'provider' } as const;

const hashAndRange = (index: { partitionKey: string; sortKey: string }) => [
  { AttributeName: index.partitionKey, KeyType: 'HASH' },
  { AttributeName: index.sortKey, KeyType: 'RANGE' },
];

/** CreateTable inputs for local tables (dynalite), equal to what the stack declares. */
export function createTableInputs(names: {
  ledger: string;
  idempotency: string;
  rateBudget: string;
  circuits: string;
}): Record<string, unknown>[] {
  const { byCreditApplication, byExecution } = LEDGER_TABLE;
  const keys = new Set([
    LEDGER_TABLE.partitionKey,
    LEDGER_TABLE.sortKey,
    ...hashAndRange(byCreditApplication).map((k) => k.AttributeName),
    ...hashAndRange(byExecution).map((k) => k.AttributeName),
  ]);
  return [
    {
      TableName: names.ledger,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [...keys].map((AttributeName) => ({ AttributeName, AttributeType: 'S' })),
      KeySchema: hashAndRange(LEDGER_TABLE),
      GlobalSecondaryIndexes: [
        {
          IndexName: byCreditApplication.indexName,
          KeySchema: hashAndRange(byCreditApplication),
          Projection: { ProjectionType: 'ALL' },
        },
        {
          IndexName: byExecution.indexName,
          KeySchema: hashAndRange(byExecution),
          Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: [...byExecution.projected] },
        },
      ],
    },
    {
      TableName: names.idempotency,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: IDEMPOTENCY_TABLE.partitionKey, AttributeType: 'S' }],
      KeySchema: [{ AttributeName: IDEMPOTENCY_TABLE.partitionKey, KeyType: 'HASH' }],
    },
    {
      TableName: names.rateBudget,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: RATE_BUDGET_TABLE.partitionKey, AttributeType: 'S' }],
      KeySchema: [{ AttributeName: RATE_BUDGET_TABLE.partitionKey, KeyType: 'HASH' }],
    },
    {
      TableName: names.circuits,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: CIRCUIT_TABLE.partitionKey, AttributeType: 'S' }],
      KeySchema: [{ AttributeName: CIRCUIT_TABLE.partitionKey, KeyType: 'HASH' }],
    },
  ];
}
