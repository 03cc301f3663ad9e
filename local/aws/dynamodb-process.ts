/**
 * dynalite in a process of its own (forked by local/aws/dynamodb.ts), as DynamoDB is a service of its own: the
 * local twin's main thread (API, state-machine runner, simulators) does not also serve every container's table
 * calls. It reports its URL over IPC and exits when its parent goes away.
 */
import { setPriority } from 'node:os';
import dynalite from 'dynalite';
import { listenOnLoopback } from '#local/listen.ts';

const path = process.argv[2];
const nice = Number(process.argv[4] ?? 0);
if (nice) setPriority(nice);
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...(path ? { path } : {}) });
const { url } = await listenOnLoopback(server, Number(process.argv[3] ?? 0));
process.send?.({ url });
process.on('disconnect', () => process.exit(0));
