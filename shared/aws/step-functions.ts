/** The Step Functions client the batch functions share (one per container), and the one history read they make. */
import { GetExecutionHistoryCommand, type HistoryEvent, SFNClient } from '@aws-sdk/client-sfn';

let client: SFNClient | undefined;
export function stepFunctions(): SFNClient {
  client ??= new SFNClient({});
  return client;
}

/** An execution's latest event (GetExecutionHistory, newest first, one event): its `id` is the number of events so
 * far; `withData` adds the state's input. */
export async function latestEvent(executionArn: string, withData: boolean): Promise<HistoryEvent | undefined> {
  const { events } = await stepFunctions().send(
    new GetExecutionHistoryCommand({ executionArn, reverseOrder: true, maxResults: 1, includeExecutionData: withData }),
  );
  return events?.[0];
}
