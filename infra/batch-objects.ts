/**
 * Where in the batch bucket the state machine itself reads and writes. CDK's own Distributed Map reader and
 * writer grant the whole bucket (`bucket/*`); these grant the Distributed Maps only what they touch: the task files
 * Prepare writes (`batches/<execution>/tasks/<provider>.jsonl`, functions/batch-prepare) and the map runs' results.
 */
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { ResultWriterV2, S3JsonLItemReader } from 'aws-cdk-lib/aws-stepfunctions';

/** The task files a Distributed Map reads (ItemReader). */
export const TASK_FILES = 'batches/*/tasks/*';
/** Where a Distributed Map writes its results (ResultWriter), read back by Summarize. */
export const MAP_RUNS_PREFIX = 'map-runs';

/** A JSONL ItemReader that may read the task files only. */
export class TaskFileReader extends S3JsonLItemReader {
  override providePolicyStatements(): PolicyStatement[] {
    return [new PolicyStatement({ actions: ['s3:GetObject'], resources: [this.bucket.arnForObjects(TASK_FILES)] })];
  }
}

/** A ResultWriter that may write (and complete multipart uploads) under `map-runs/` only. */
export class MapRunResultWriter extends ResultWriterV2 {
  private readonly target: IBucket;
  constructor(bucket: IBucket) {
    super({ bucket, prefix: MAP_RUNS_PREFIX });
    this.target = bucket;
  }
  override providePolicyStatements(): PolicyStatement[] {
    return [
      new PolicyStatement({
        // What Step Functions documents for a ResultWriter, on its prefix.
        actions: ['s3:PutObject', 's3:GetObject', 's3:ListMultipartUploadParts', 's3:AbortMultipartUpload'],
        resources: [this.target.arnForObjects(`${MAP_RUNS_PREFIX}/*`)],
      }),
    ];
  }
}
