/** Auco, as the rest of the code knows it (shared/providers/provider.ts): listed in shared/providers/index.ts.
 * Auco cancels many document codes in one call: its `chunk` hook groups a batch's codes into calls. */
import * as z from 'zod/mini';
import { countSetting } from '#shared/config.ts';
import type { ChunkTask, ProviderModule } from '#shared/providers/provider.ts';
import { DEFAULT_MAX_CODES_PER_CALL, RATE } from './adapter.ts';
import { AucoItem } from './items.ts';
import { AucoSecret } from './secret.ts';

/** Codes per call to Auco: AUCO_MAX_CODES_PER_CALL, else the default. */
export function maxCodesPerCall(): number {
  return countSetting('AUCO_MAX_CODES_PER_CALL') ?? DEFAULT_MAX_CODES_PER_CALL;
}

const isEmail = (s: string | undefined) => s !== undefined && z.safeParse(z.email(), s).success;
const codesOf = (task: ChunkTask) => (task.item.codes as string[] | undefined) ?? [];

export const auco = {
  name: 'auco',
  title: 'Auco',
  // Metered: two containers at a static 2.375/s each could send 3 each in one second (a window catches three slots
  // 421 ms apart), 6 where the budget is 5; one container would throttle an API call whenever a batch runs.
  functions: [
    {
      fn: 'cancel-signing-processes',
      reserved: 2,
      api: 2,
      description: 'Cancel Auco signing processes',
      route: { method: 'POST', path: '/v1/auco/documents/cancel' },
    },
  ],
  item: AucoItem,
  targetFields: ['code'],
  limit: RATE,
  // Too small a limit to split into per-container shares that keep any one second within it.
  metered: true,
  secret: AucoSecret,
  secretPlaceholder: { template: { publicKey: 'puk_REPLACE_WITH_PUBLIC_KEY' }, generated: 'privateKey' },
  // Its signers receive the reason.
  reasonGoesTo: 'Auco signers',
  environment: { AUCO_MAX_CODES_PER_CALL: String(DEFAULT_MAX_CODES_PER_CALL) },
  checkItem(item, batch, where) {
    return !item.email && !isEmail(batch.requestedBy)
      ? [
          {
            path: `${where}.email`,
            message: 'is required for Auco when requestedBy is not an email address (Auco records who cancelled)',
          },
        ]
      : [];
  },
  chunk: {
    size: maxCodesPerCall,
    /** Codes grouped per (message, email), at most `size` per call. */
    tasks(items, batch, size, key) {
      const groups = new Map<string, { message: string; email: string; codes: string[]; indexes: number[] }>();
      for (const { item, index } of items) {
        const message = (item.message as string | undefined) ?? batch.reason;
        const email = (item.email as string | undefined) ?? batch.requestedBy ?? '';
        const group = groups.get(`${message}\n${email}`) ?? { message, email, codes: [], indexes: [] };
        group.codes.push(item.code as string);
        group.indexes.push(index);
        groups.set(`${message}\n${email}`, group);
      }
      const tasks: ChunkTask[] = [];
      for (const { message, email, codes, indexes } of groups.values()) {
        for (let i = 0; i < codes.length; i += size) {
          const chunkCodes = codes.slice(i, i + size);
          tasks.push({
            item: { provider: 'auco', codes: chunkCodes, message, email },
            indexes: indexes.slice(i, i + size),
            idempotencyKey: key(`auco:${chunkCodes.join(',')}`),
          });
        }
      }
      return tasks;
    },
    targets: (task) => (task.indexes ?? []).map((_, i) => ({ code: codesOf(task)[i] ?? '' })),
    /** Only the given codes, as a chunk of their own with its own key. */
    subset(task, targets, key) {
      const codes = targets.map((t) => String(t.target.code ?? ''));
      return {
        item: { ...task.item, codes },
        indexes: targets.map((t) => t.index),
        idempotencyKey: key(`auco:${codes.join(',')}`),
      };
    },
  },
  cli: {
    usage: 'auco <code>... --message TEXT --email ADDRESS',
    request(ids, opts, need, usage) {
      if (!ids.length) throw usage('at least one document code is required');
      return {
        path: '/v1/auco/documents/cancel',
        body: {
          codes: ids,
          message: need(opts.message as string | undefined, '--message'),
          email: need(opts.email as string | undefined, '--email'),
        },
      };
    },
  },
} as const satisfies ProviderModule<'auco'>;
