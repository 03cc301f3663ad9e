/**
 * A local Step Functions endpoint (StartExecution, DescribeExecution, ListExecutions, StopExecution, and
 * GetExecutionHistory's latest state entered) that runs the
 * synthesized batch definition with the local runner, so the batches function uses the real SDK client unchanged.
 *
 * Given a directory, executions are kept there, one JSON file each, written (and flushed) before StartExecution
 * answers and again when they end, so a crash of `npm start` loses none: `resume()` re-runs every execution that
 * was still running from its input, under the same name. Re-running is harmless: the items' idempotency keys
 * derive from the execution, so what finished before the crash is replayed, not repeated, and what was in flight
 * is taken over once its lock lapses.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LocalStateMachine, RunStats } from '#local/state-machine.ts';
import { executionFailure, newStats } from '#local/state-machine.ts';
import { log } from '#shared/observability/log.ts';
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

/** What the execution's file holds. */
type Kept = Omit<LocalExecution, 'stats' | 'done' | 'startDate' | 'stopDate'> & {
  startDate: string;
  stopDate?: string;
};

/** Step Functions' rule for execution names: 1 to 80 characters, none of whitespace, brackets, wildcards,
 * `"#%\^|~`$&,;:/` or control characters. */
const EXECUTION_NAME = /^[^\s<>{}[\]?*"#%\\^|~`$&,;:/\p{Cc}]{1,80}$/u;

export class LocalStepFunctions {
  readonly executions = new Map<string, LocalExecution>();
  readonly stateMachineArn: string;
  private readonly machine: LocalStateMachine;
  private service: { url: string; close: () => Promise<void> } | undefined;
  private readonly dir: string | undefined;
  /** Kept executions found running at start-up, until `resume()`. */
  private unfinished: LocalExecution[] = [];

  /** `dir`: where executions are kept (they survive restarts); none keeps them in memory. */
  constructor(machine: LocalStateMachine, stateMachineArn: string, dir?: string) {
    this.machine = machine;
    this.stateMachineArn = stateMachineArn;
    this.dir = dir;
    if (!dir || !existsSync(dir)) return;
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.json'))) {
      const { startDate, stopDate, ...kept } = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Kept;
      const execution: LocalExecution = {
        ...kept,
        startDate: new Date(startDate),
        ...(stopDate ? { stopDate: new Date(stopDate) } : {}),
        stats: newStats(),
        done: Promise.resolve(),
      };
      this.executions.set(execution.executionArn, execution);
      if (execution.status === 'RUNNING') this.unfinished.push(execution);
    }
  }

  /** Runs again, from their input, the kept executions a crash interrupted; returns how many. */
  resume(): number {
    const unfinished = this.unfinished;
    this.unfinished = [];
    for (const execution of unfinished) this.run(execution);
    return unfinished.length;
  }

  /** Writes an execution's file (flushed, then renamed into place: a crash leaves the old file or the new one). */
  private keep(execution: LocalExecution): void {
    if (!this.dir) return;
    const { stats: _stats, done: _done, startDate, stopDate, ...rest } = execution;
    const kept: Kept = {
      ...rest,
      startDate: startDate.toISOString(),
      ...(stopDate ? { stopDate: stopDate.toISOString() } : {}),
    };
    mkdirSync(this.dir, { recursive: true });
    const file = join(this.dir, `${execution.name}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify(kept), { flush: true });
    renameSync(`${file}.tmp`, file);
  }

  get url(): string {
    return this.service?.url ?? '';
  }

  /** Starts an execution (as StartExecution does: the same name and input returns the running one). */
  start(input: string, name: string = randomUUID(), stateMachineArn = this.stateMachineArn): LocalExecution {
    if (stateMachineArn !== this.stateMachineArn)
      throw new AwsServiceError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${stateMachineArn}'`);
    if (!EXECUTION_NAME.test(name)) throw new AwsServiceError('InvalidName', `Invalid Name: '${name}'`);
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
    // Started once kept: StartExecution fails rather than answer for an execution a crash would lose.
    this.keep(execution);
    this.executions.set(executionArn, execution);
    this.run(execution);
    return execution;
  }

  private run(execution: LocalExecution): void {
    execution.done = this.machine
      .run(JSON.parse(execution.input), { arn: execution.executionArn, name: execution.name }, execution.stats)
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
        try {
          this.keep(execution);
        } catch (error) {
          // Still RUNNING on disk: a restart runs it again, which its idempotency keys make harmless.
          log.error('execution end not kept', { executionArn: execution.executionArn, error });
        }
      });
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

  /** The latest event only (as `reverseOrder: true` answers first): the state the execution entered last, its id the
   * number of events so far, as Step Functions numbers them from 1 (the runner's count, `RunStats.historyEvents`). */
  private history(executionArn: string) {
    const e = this.executions.get(executionArn);
    if (!e) throw new AwsServiceError('ExecutionDoesNotExist', `Execution Does Not Exist: '${executionArn}'`);
    const current = e.status === 'RUNNING' ? e.stats.current : undefined;
    if (!current) return { events: [] };
    const type = this.machine.waitStates.has(current.name) ? 'WaitStateEntered' : 'TaskStateEntered';
    return {
      events: [
        {
          id: e.stats.historyEvents,
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
