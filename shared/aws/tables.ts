/** The DynamoDB tables' keys, one definition for the CDK stack, the local tables and the code that reads them. */
export const LEDGER_TABLE = {
  partitionKey: 'pk',
  sortKey: 'sk',
  /** Every outcome of one credit application, in time order. */
  byCreditApplication: { indexName: 'byCreditApplication', partitionKey: 'creditApplicationId', sortKey: 'at' },
  /** Every outcome of one batch execution: its progress while it runs. */
  byExecution: { indexName: 'byExecution', partitionKey: 'executionId', sortKey: 'at' },
} as const;

export const IDEMPOTENCY_TABLE = {
  partitionKey: 'id',
  /** Epoch seconds after which DynamoDB may delete the record (TTL). */
  ttlAttribute: 'expiration',
} as const;

/** CreateTable inputs for local tables (dynalite), equal to what the stack declares. */
export function createTableInputs(names: { ledger: string; idempotency: string }): Record<string, unknown>[] {
  return [
    {
      TableName: names.ledger,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
        { AttributeName: 'creditApplicationId', AttributeType: 'S' },
        { AttributeName: 'executionId', AttributeType: 'S' },
        { AttributeName: 'at', AttributeType: 'S' },
      ],
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      GlobalSecondaryIndexes: [
        {
          IndexName: LEDGER_TABLE.byCreditApplication.indexName,
          KeySchema: [
            { AttributeName: 'creditApplicationId', KeyType: 'HASH' },
            { AttributeName: 'at', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        },
        {
          IndexName: LEDGER_TABLE.byExecution.indexName,
          KeySchema: [
            { AttributeName: 'executionId', KeyType: 'HASH' },
            { AttributeName: 'at', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['provider', 'outcome'] },
        },
      ],
    },
    {
      TableName: names.idempotency,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
    },
  ];
}
