/** The few S3 calls the batch functions make: read a manifest, write tasks and results. */
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { config } from '#shared/config.ts';
import { ConfigurationError, InvalidInputError } from '#shared/core/errors.ts';

let client: S3Client | undefined;
function s3(): S3Client {
  // A local endpoint (AWS_ENDPOINT_URL_S3, as `npm start` sets) serves buckets by path, not by host name.
  client ??= new S3Client({ forcePathStyle: Boolean(config().s3Endpoint) });
  return client;
}

/** Reads an object as text. A missing object is the caller's input error; access denied is our configuration. */
export async function getText(bucket: string, key: string, what = 'object'): Promise<string> {
  try {
    const answer = await s3().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return (await answer.Body?.transformToString('utf8')) ?? '';
  } catch (error) {
    const name = (error as { name?: string }).name;
    if (name === 'NoSuchKey' || name === 'NoSuchBucket' || name === 'NotFound') {
      throw new InvalidInputError([{ path: 'manifest', message: `the ${what} s3://${bucket}/${key} does not exist` }]);
    }
    if (name === 'AccessDenied')
      throw new ConfigurationError(`Access denied reading s3://${bucket}/${key}: grant s3:GetObject on it`);
    throw error;
  }
}

export async function putText(
  bucket: string,
  key: string,
  body: string,
  contentType = 'application/json',
): Promise<void> {
  await s3().send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }));
}

/** Writes rows as JSON Lines: one JSON value per line, each line ended. */
export async function putJsonl(bucket: string, key: string, rows: readonly unknown[]): Promise<void> {
  await putText(bucket, key, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`, 'application/x-ndjson');
}
