/**
 * The audit ledger and the idempotency records (DynamoDB, on demand). Each function gets only the actions it
 * uses, on only the table (and index) it uses: `grantLedger` and `grantIdempotency` are the one place that decides.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import { AttributeType, Billing, ProjectionType, TableEncryptionV2, TableV2 } from 'aws-cdk-lib/aws-dynamodb';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { CIRCUIT_TABLE, IDEMPOTENCY_TABLE, LEDGER_TABLE, RATE_BUDGET_TABLE } from '#shared/aws/tables.ts';

export type LedgerAccess = 'write' | 'write-and-read-target' | 'query' | 'progress';

export class CancellationTables extends Construct {
  readonly ledger: TableV2;
  readonly idempotency: TableV2;
  readonly rateBudget: TableV2;
  readonly circuits: TableV2;

  constructor(scope: Construct, id: string, props: { removalPolicy: RemovalPolicy }) {
    super(scope, id);
    this.ledger = new TableV2(this, 'Ledger', {
      partitionKey: { name: LEDGER_TABLE.partitionKey, type: AttributeType.STRING },
      sortKey: { name: LEDGER_TABLE.sortKey, type: AttributeType.STRING },
      billing: Billing.onDemand(),
      encryption: TableEncryptionV2.awsManagedKey(),
      // An audit ledger: recoverable to any second of the last 35 days, and kept when the stack is deleted in prod.
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: props.removalPolicy === RemovalPolicy.RETAIN,
      removalPolicy: props.removalPolicy,
      globalSecondaryIndexes: [
        {
          indexName: LEDGER_TABLE.byCreditApplication.indexName,
          partitionKey: { name: LEDGER_TABLE.byCreditApplication.partitionKey, type: AttributeType.STRING },
          sortKey: { name: LEDGER_TABLE.byCreditApplication.sortKey, type: AttributeType.STRING },
        },
        {
          indexName: LEDGER_TABLE.byExecution.indexName,
          partitionKey: { name: LEDGER_TABLE.byExecution.partitionKey, type: AttributeType.STRING },
          sortKey: { name: LEDGER_TABLE.byExecution.sortKey, type: AttributeType.STRING },
          projectionType: ProjectionType.INCLUDE,
          nonKeyAttributes: [...LEDGER_TABLE.byExecution.projected],
        },
      ],
    });
    this.idempotency = new TableV2(this, 'Idempotency', {
      partitionKey: { name: IDEMPOTENCY_TABLE.partitionKey, type: AttributeType.STRING },
      billing: Billing.onDemand(),
      encryption: TableEncryptionV2.awsManagedKey(),
      timeToLiveAttribute: IDEMPOTENCY_TABLE.ttlAttribute,
      // Records live a day (IDEMPOTENCY_TTL_SECONDS); losing them is losing replays, not data.
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: false },
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.rateBudget = new TableV2(this, 'RateBudget', {
      partitionKey: { name: RATE_BUDGET_TABLE.partitionKey, type: AttributeType.STRING },
      billing: Billing.onDemand(),
      encryption: TableEncryptionV2.awsManagedKey(),
      // One item per shared provider budget, rewritten with every request: nothing worth recovering.
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: false },
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // One item per provider (shared/core/circuit.ts): state that heals itself, nothing to recover.
    this.circuits = new TableV2(this, 'Circuits', {
      partitionKey: { name: CIRCUIT_TABLE.partitionKey, type: AttributeType.STRING },
      billing: Billing.onDemand(),
      encryption: TableEncryptionV2.awsManagedKey(),
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: false },
      removalPolicy: RemovalPolicy.DESTROY,
    });
  }

  /** Meters a provider budget several functions share: UpdateItem on the budget table, nothing else. */
  grantRateBudget(fn: LambdaFunction): void {
    fn.addToRolePolicy(
      new PolicyStatement({ actions: ['dynamodb:UpdateItem'], resources: [this.rateBudget.tableArn] }),
    );
    fn.addEnvironment('RATE_BUDGET_TABLE', this.rateBudget.tableName);
  }

  /** update: the cancel functions read, count failures, claim probes and close; read: Summarize plans rounds. */
  grantCircuits(fn: LambdaFunction, access: 'update' | 'read'): void {
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: access === 'update' ? ['dynamodb:GetItem', 'dynamodb:UpdateItem'] : ['dynamodb:GetItem'],
        resources: [this.circuits.tableArn],
      }),
    );
    fn.addEnvironment('CIRCUIT_TABLE', this.circuits.tableName);
  }

  /** write: BatchWriteItem; write-and-read-target: and Query on the table (a target's history); query: Query on the
   * table and the credit-application index; progress: Query on the execution index only. */
  grantLedger(fn: LambdaFunction, access: LedgerAccess): void {
    const index = (name: string) => `${this.ledger.tableArn}/index/${name}`;
    const grants: Record<LedgerAccess, { actions: string[]; resources: string[] }> = {
      write: { actions: ['dynamodb:BatchWriteItem'], resources: [this.ledger.tableArn] },
      'write-and-read-target': {
        actions: ['dynamodb:BatchWriteItem', 'dynamodb:Query'],
        resources: [this.ledger.tableArn],
      },
      query: {
        actions: ['dynamodb:Query'],
        resources: [this.ledger.tableArn, index(LEDGER_TABLE.byCreditApplication.indexName)],
      },
      progress: { actions: ['dynamodb:Query'], resources: [index(LEDGER_TABLE.byExecution.indexName)] },
    };
    fn.addToRolePolicy(new PolicyStatement(grants[access]));
    fn.addEnvironment('LEDGER_TABLE', this.ledger.tableName);
  }

  /** The execution start records (shared/core/execution-starts.ts), kept in the idempotency table: `record` for the
   * functions that start executions or register schedules, `read` for Prepare. */
  grantExecutionStarts(fn: LambdaFunction, access: 'record' | 'read'): void {
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: access === 'record' ? ['dynamodb:PutItem', 'dynamodb:DeleteItem'] : ['dynamodb:GetItem'],
        resources: [this.idempotency.tableArn],
      }),
    );
    fn.addEnvironment('IDEMPOTENCY_TABLE', this.idempotency.tableName);
  }

  grantIdempotency(fn: LambdaFunction): void {
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['dynamodb:PutItem', 'dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
        resources: [this.idempotency.tableArn],
      }),
    );
    fn.addEnvironment('IDEMPOTENCY_TABLE', this.idempotency.tableName);
  }
}
