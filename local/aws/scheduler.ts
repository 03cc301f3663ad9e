/**
 * A local EventBridge Scheduler, in this process, with the same semantics for what this project uses: one-time
 * `at()` schedules in groups, Create/Update/Get/Delete/List over the real REST API (so the expirations function
 * uses the SDK client unchanged), firing on time by starting the local state machine (a templated target, or the
 * universal sfn:startExecution target with the execution's name; context attributes replaced), a retry policy and a
 * dead-letter list for a target that will not start, delete-after-completion, and schedules kept in a file so a
 * restart of `npm start` does not lose them (overdue ones fire at start-up, as the service fires late ones).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { dirname } from 'node:path';
import { LOCAL_ACCOUNT, LOCAL_REGION } from '#local/lambda-events.ts';
import { listenOnLoopback, withBody } from '#local/listen.ts';
import { parseAtExpression } from '#shared/core/expirations.ts';
import { sleep } from '#shared/http/sleep.ts';
import { log } from '#shared/observability/log.ts';
import { AwsServiceError } from './json-service.ts';

export interface LocalSchedule {
  Name: string;
  GroupName: string;
  Arn: string;
  ScheduleExpression: string;
  ScheduleExpressionTimezone?: string;
  State: 'ENABLED' | 'DISABLED';
  Description?: string;
  FlexibleTimeWindow: { Mode: 'OFF' | 'FLEXIBLE'; MaximumWindowInMinutes?: number };
  ActionAfterCompletion?: 'NONE' | 'DELETE';
  Target: {
    Arn: string;
    RoleArn: string;
    Input?: string;
    RetryPolicy?: { MaximumEventAgeInSeconds?: number; MaximumRetryAttempts?: number };
    DeadLetterConfig?: { Arn?: string };
  };
  CreationDate: number;
  LastModificationDate: number;
}

export interface Fired {
  name: string;
  group: string;
  at: string;
  firedAt: string;
  /** What started, or the error that sent the event to the dead-letter queue. */
  executionArn?: string;
  error?: string;
}

interface State {
  schedules: LocalSchedule[];
  fired: Fired[];
  deadLetters: (Fired & { input?: string })[];
}

/** Starts the target (the state machine), under `name` when the schedule names the execution; throws when it
 * cannot. Returns the execution's ARN. */
export type StartTarget = (targetArn: string, input: string, name?: string) => Promise<string> | string;

/** The universal target for Step Functions StartExecution (any partition), which this scheduler runs as the service
 * does: its Input holds StartExecution's parameters. Other universal targets are not emulated. */
const START_EXECUTION = /^arn:[\w-]+:scheduler:::aws-sdk:sfn:startExecution$/;
const UNIVERSAL = /^arn:[\w-]+:scheduler:::aws-sdk:/;

/** What a target invocation passes the state machine: its ARN, the execution input, and a name if any. */
function startParameters(targetArn: string, input: string): { arn: string; input: string; name?: string } {
  if (!START_EXECUTION.test(targetArn)) return { arn: targetArn, input };
  const p = JSON.parse(input) as { StateMachineArn?: unknown; Name?: unknown; Input?: unknown };
  return {
    arn: String(p.StateMachineArn),
    input: typeof p.Input === 'string' ? p.Input : '{}',
    ...(typeof p.Name === 'string' ? { name: p.Name } : {}),
  };
}

/** setTimeout's longest delay: later schedules are re-armed. */
const MAX_TIMER_MS = 2_147_483_647;

export class LocalScheduler {
  private readonly state: State = { schedules: [], fired: [], deadLetters: [] };
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private closeServer: (() => Promise<void>) | undefined;
  private readonly file: string | undefined;
  private readonly start: StartTarget;
  /** Milliseconds between attempts to start a target that failed (the service backs off; locally, quickly). */
  retryDelayMs = 1_000;
  /** How many times each firing is delivered: the service delivers at least once, so tests deliver twice. */
  deliveriesPerFiring = 1;
  url = '';

  constructor(start: StartTarget, file?: string) {
    this.start = start;
    this.file = file;
    if (file && existsSync(file)) Object.assign(this.state, JSON.parse(readFileSync(file, 'utf8')) as State);
  }

  get schedules(): readonly LocalSchedule[] {
    return this.state.schedules;
  }
  get fired(): readonly Fired[] {
    return this.state.fired;
  }
  get deadLetters(): readonly Fired[] {
    return this.state.deadLetters;
  }

  async listen(port = 0): Promise<string> {
    const server = http.createServer(withBody((req, res, body) => this.serve(req, res, body)));
    const { url, close } = await listenOnLoopback(server, port);
    this.closeServer = close;
    this.url = url;
    // Arm every kept schedule; overdue ones fire now.
    for (const s of this.state.schedules) this.arm(s);
    return this.url;
  }

  async close(): Promise<void> {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    const close = this.closeServer;
    this.closeServer = undefined;
    await close?.();
  }

  private key(group: string, name: string): string {
    return `${group}/${name}`;
  }

  private find(group: string, name: string): LocalSchedule | undefined {
    return this.state.schedules.find((s) => s.GroupName === group && s.Name === name);
  }

  private save(): void {
    if (!this.file) return;
    mkdirSync(dirname(this.file), { recursive: true });
    writeFileSync(`${this.file}.tmp`, JSON.stringify(this.state, null, 2));
    renameSync(`${this.file}.tmp`, this.file);
  }

  private validate(body: Record<string, unknown>): void {
    const expression = String(body.ScheduleExpression ?? '');
    if (parseAtExpression(expression) === undefined)
      throw new AwsServiceError(
        'ValidationException',
        `ScheduleExpression must be at(yyyy-mm-ddThh:mm:ss) locally, not ${expression}`,
        400,
      );
    const target = body.Target as LocalSchedule['Target'] | undefined;
    if (!target?.Arn || !target.RoleArn)
      throw new AwsServiceError('ValidationException', 'Target.Arn and Target.RoleArn are required', 400);
    if (!(body.FlexibleTimeWindow as { Mode?: string } | undefined)?.Mode)
      throw new AwsServiceError('ValidationException', 'FlexibleTimeWindow is required', 400);
    const zone = body.ScheduleExpressionTimezone;
    if (zone !== undefined && zone !== 'UTC')
      throw new AwsServiceError('ValidationException', 'only UTC schedules are supported locally', 400);
    if (UNIVERSAL.test(target.Arn) && !START_EXECUTION.test(target.Arn))
      throw new AwsServiceError('ValidationException', `universal target ${target.Arn} is not emulated locally`, 400);
    if (START_EXECUTION.test(target.Arn)) {
      let parameters: { StateMachineArn?: unknown; Input?: unknown } | undefined;
      try {
        parameters = JSON.parse(target.Input ?? '') as typeof parameters;
      } catch {}
      if (typeof parameters?.StateMachineArn !== 'string')
        throw new AwsServiceError(
          'ValidationException',
          'the Input of a universal sfn:startExecution target must be JSON holding StartExecution parameters (StateMachineArn, Name, Input)',
          400,
        );
    }
  }

  private upsert(name: string, body: Record<string, unknown>, update: boolean): LocalSchedule {
    const group = String(body.GroupName ?? 'default');
    const existing = this.find(group, name);
    if (update && !existing)
      throw new AwsServiceError('ResourceNotFoundException', `Schedule ${name} does not exist.`, 404);
    if (!update && existing) throw new AwsServiceError('ConflictException', `Schedule ${name} already exists.`, 409);
    this.validate(body);
    const now = Date.now() / 1000;
    const schedule: LocalSchedule = {
      Name: name,
      GroupName: group,
      Arn: `arn:aws:scheduler:${LOCAL_REGION}:${LOCAL_ACCOUNT}:schedule/${group}/${name}`,
      ScheduleExpression: String(body.ScheduleExpression),
      ...(body.ScheduleExpressionTimezone
        ? { ScheduleExpressionTimezone: String(body.ScheduleExpressionTimezone) }
        : {}),
      State: body.State === 'DISABLED' ? 'DISABLED' : 'ENABLED',
      ...(body.Description ? { Description: String(body.Description) } : {}),
      FlexibleTimeWindow: body.FlexibleTimeWindow as LocalSchedule['FlexibleTimeWindow'],
      ActionAfterCompletion: body.ActionAfterCompletion === 'DELETE' ? 'DELETE' : 'NONE',
      Target: body.Target as LocalSchedule['Target'],
      CreationDate: existing?.CreationDate ?? now,
      LastModificationDate: now,
    };
    this.state.schedules = this.state.schedules.filter((s) => s !== existing);
    this.state.schedules.push(schedule);
    this.save();
    this.arm(schedule);
    return schedule;
  }

  private remove(group: string, name: string): boolean {
    const existing = this.find(group, name);
    if (!existing) return false;
    this.state.schedules = this.state.schedules.filter((s) => s !== existing);
    const timer = this.timers.get(this.key(group, name));
    if (timer) clearTimeout(timer);
    this.timers.delete(this.key(group, name));
    this.save();
    return true;
  }

  private arm(schedule: LocalSchedule): void {
    const key = this.key(schedule.GroupName, schedule.Name);
    const previous = this.timers.get(key);
    if (previous) clearTimeout(previous);
    if (schedule.State !== 'ENABLED') return;
    const at = parseAtExpression(schedule.ScheduleExpression) ?? Date.now();
    const delay = Math.max(0, at - Date.now());
    const timer = setTimeout(
      () => (delay > MAX_TIMER_MS ? this.arm(schedule) : void this.fire(schedule)),
      Math.min(delay, MAX_TIMER_MS),
    );
    timer.unref();
    this.timers.set(key, timer);
  }

  private async fire(schedule: LocalSchedule): Promise<void> {
    this.timers.delete(this.key(schedule.GroupName, schedule.Name));
    if (this.find(schedule.GroupName, schedule.Name) !== schedule) return; // replaced or deleted meanwhile
    // Deleted only after this: the target started durably (the local Step Functions keeps an execution before it
    // answers), or its event went to the dead-letter queue. A crash before then leaves the schedule to fire again.
    for (let i = 0; i < this.deliveriesPerFiring; i++) await this.deliver(schedule);
    // A one-time schedule is done with, whether its target started or its event went to the dead-letter queue.
    if (schedule.ActionAfterCompletion === 'DELETE') this.remove(schedule.GroupName, schedule.Name);
    else this.save();
  }

  /** Starts the target, retrying as the schedule's policy allows; records it as fired or as a dead letter. */
  private async deliver(schedule: LocalSchedule): Promise<void> {
    const at = schedule.ScheduleExpression.slice('at('.length, -1); // validated on create: at(yyyy-mm-ddThh:mm:ss)
    const attempts = 1 + Math.min(schedule.Target.RetryPolicy?.MaximumRetryAttempts ?? 185, 5);
    let lastError = '';
    const executionId = randomUUID().replaceAll('-', '').slice(0, 16);
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        // The context attributes the service replaces in a target's input.
        const input = (schedule.Target.Input ?? '{}')
          .replaceAll('<aws.scheduler.schedule-arn>', schedule.Arn)
          .replaceAll('<aws.scheduler.scheduled-time>', `${at}Z`)
          .replaceAll('<aws.scheduler.execution-id>', executionId)
          .replaceAll('<aws.scheduler.attempt-number>', String(attempt));
        const target = startParameters(schedule.Target.Arn, input);
        const executionArn = await this.start(target.arn, target.input, target.name);
        this.state.fired.push({
          name: schedule.Name,
          group: schedule.GroupName,
          at,
          firedAt: new Date().toISOString(),
          executionArn,
        });
        log.info('schedule fired', { schedule: schedule.Name, executionArn });
        return;
      } catch (error) {
        lastError = (error as Error).message;
        if (attempt < attempts) await sleep(this.retryDelayMs);
      }
    }
    // Out of retries: the event goes to the dead-letter queue.
    this.state.deadLetters.push({
      name: schedule.Name,
      group: schedule.GroupName,
      at,
      firedAt: new Date().toISOString(),
      error: lastError,
      ...(schedule.Target.Input ? { input: schedule.Target.Input } : {}),
    });
    log.error('schedule could not start its target; sent to the dead-letter queue', {
      schedule: schedule.Name,
      error: lastError,
    });
  }

  private serve(req: http.IncomingMessage, res: http.ServerResponse, raw: string): void {
    const [status, body, errorType] = this.answer(
      req.method ?? 'GET',
      new URL(req.url ?? '/', 'http://scheduler'),
      raw,
    );
    res.writeHead(status, {
      'content-type': 'application/json',
      ...(errorType ? { 'x-amzn-errortype': errorType } : {}),
    });
    res.end(JSON.stringify(body));
  }

  /** One REST call: [status, body, error type]. */
  private answer(method: string, url: URL, raw: string): [number, unknown, string?] {
    const missing = (name: string): [number, unknown, string] => [
      404,
      { Message: `Schedule ${name} does not exist.` },
      'ResourceNotFoundException',
    ];
    try {
      const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
      const one = /^\/schedules\/([^/]+)$/.exec(url.pathname);
      const name = decodeURIComponent(one?.[1] ?? '');
      const group = url.searchParams.get('groupName') ?? String(body.GroupName ?? 'default');
      if (one && method === 'POST') return [200, { ScheduleArn: this.upsert(name, body, false).Arn }];
      if (one && method === 'PUT') return [200, { ScheduleArn: this.upsert(name, body, true).Arn }];
      if (one && method === 'GET') {
        const s = this.find(group, name);
        return s ? [200, s] : missing(name);
      }
      if (one && method === 'DELETE') return this.remove(group, name) ? [200, {}] : missing(name);
      if (url.pathname === '/schedules' && method === 'GET') {
        const wanted = url.searchParams.get('ScheduleGroup');
        const summaries = this.state.schedules
          .filter((s) => !wanted || s.GroupName === wanted)
          .map((s) => ({
            Arn: s.Arn,
            Name: s.Name,
            GroupName: s.GroupName,
            State: s.State,
            Target: { Arn: s.Target.Arn },
            CreationDate: s.CreationDate,
            LastModificationDate: s.LastModificationDate,
          }));
        return [200, { Schedules: summaries }];
      }
      return [404, { Message: `unsupported ${method} ${url.pathname}` }, 'ResourceNotFoundException'];
    } catch (error) {
      if (error instanceof AwsServiceError) return [error.status, { Message: error.message }, error.type];
      return [500, { Message: (error as Error).message }, 'InternalServerException'];
    }
  }
}
