/**
 * A local Step Functions endpoint (StartExecution, DescribeExecution, ListExecutions, StopExecution, and
 * GetExecutionHistory's latest state entered) that runs the
 * synthesized batch definition with the local runner, so the batches function uses the real SDK client unchanged.
 */
import { randomUUID } from 'node:crypto';
import type { LocalStateMachine, RunStats } from '../state-machine.ts';
import { executionFailure, newStats } from '../state-machine.ts';
import { AwsServiceError, startJsonService } from './json-service.ts';

export interface LocalExecution {
  executionArn: string;
  stateMachineArn: string;
  name: string;
  status: 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'ABORTED';
  input: string;
  startDate: Date;
  stopDate?: Date;
  output?: string;
  error?: string;
  cause?: string;
  stats: RunStats;
  done: Promise<void>;
}

export class LocalStepFunctions {
  readonly executions = new Map<string, LocalExecution>();
  readonly stateMachineArn: string;
  private readonly machine: LocalStateMachine;
  private service: { url: string; close: () => Promise<void> } | undefined;

  constructor(machine: LocalStateMachine, stateMachineArn: string) {
    this.machine = machine;
    this.stateMachineArn = stateMachineArn;
  }

  get url(): string {
    return this.service?.url ?? '';
  }

  /** Starts an execution (as StartExecution does: the same name and input returns the running one). */
  start(input: string, name: string = randomUUID(), stateMachineArn = this.stateMachineArn): LocalExecution {
    if (stateMachineArn !== this.stateMachineArn)
      throw new AwsServiceError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${stateMachineArn}'`);
    const executionArn = `${this.stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;
    const existing = this.executions.get(executionArn);
    if (existing) {
      if (existing.input === input && existing.status === 'RUNNING') return existing;
      throw new AwsServiceError('ExecutionAlreadyExists', `Execution Already Exists: '${executionArn}'`);
    }
    const execution: LocalExecution = {
      executionArn,
      stateMachineArn,
      name,
      status: 'RUNNING',
      input,
      startDate: new Date(),
      stats: newStats(),
      done: Promise.resolve(),
    };
    execution.done = this.machine
      .run(JSON.parse(input), { arn: executionArn, name }, execution.stats)
      .then((output) => {
        execution.status = 'SUCCEEDED';
        execution.output = JSON.stringify(output);
      })
      .catch((error: unknown) => {
        execution.status = 'FAILED';
        ({ error: execution.error, cause: execution.cause } = executionFailure(error));
      })
      .finally(() => {
        execution.stopDate = new Date();
      });
    this.executions.set(executionArn, execution);
    return execution;
  }

  private describe(executionArn: string) {
    const e = this.executions.get(executionArn);
    if (!e) throw new AwsServiceError('ExecutionDoesNotExist', `Execution Does Not Exist: '${executionArn}'`);
    const seconds = (d: Date) => d.getTime() / 1000;
    return {
      executionArn: e.executionArn,
      stateMachineArn: e.stateMachineArn,
      name: e.name,
      status: e.status,
      startDate: seconds(e.startDate),
      ...(e.stopDate ? { stopDate: seconds(e.stopDate) } : {}),
      input: e.input,
      ...(e.output !== undefined ? { output: e.output } : {}),
      ...(e.error ? { error: e.error, cause: e.cause } : {}),
    };
  }

  /** The latest event only (as `reverseOrder: true` answers first): the state the execution entered last. */
  private history(executionArn: string) {
    const e = this.executions.get(executionArn);
    if (!e) throw new AwsServiceError('ExecutionDoesNotExist', `Execution Does Not Exist: '${executionArn}'`);
    const current = e.status === 'RUNNING' ? e.stats.current : undefined;
    if (!current) return { events: [] };
    const type = this.machine.waitStates.has(current.name) ? 'WaitStateEntered' : 'TaskStateEntered';
    return {
      events: [
        {
          id: e.stats.transitions,
          timestamp: Date.now() / 1000,
          type,
          stateEnteredEventDetails: { name: current.name, input: JSON.stringify(current.input) },
        },
      ],
    };
  }

  async listen(port = 0): Promise<string> {
    this.service = await startJsonService(
      'AWSStepFunctions',
      'application/x-amz-json-1.0',
      {
        StartExecution: (input) => {
          const e = this.start(
            String(input.input ?? '{}'),
            input.name ? String(input.name) : undefined,
            String(input.stateMachineArn),
          );
          return { executionArn: e.executionArn, startDate: e.startDate.getTime() / 1000 };
        },
        DescribeExecution: (input) => this.describe(String(input.executionArn)),
        GetExecutionHistory: (input) => this.history(String(input.executionArn)),
        ListExecutions: (input) => ({
          executions: [...this.executions.values()]
            .filter((e) => !input.statusFilter || e.status === input.statusFilter)
            .map((e) => ({
              executionArn: e.executionArn,
              stateMachineArn: e.stateMachineArn,
              name: e.name,
              status: e.status,
              startDate: e.startDate.getTime() / 1000,
            })),
        }),
      },
      port,
    );
    return this.service.url;
  }

  async close(): Promise<void> {
    await this.service?.close();
  }
}
