/**
 * The batch state machine's definition as CDK synthesizes it, for the local runner: one definition, no
 * hand-written copy. The stack is synthesized in-process (bundling skipped: only the template is needed), the
 * state machine's `DefinitionString` is resolved from its CloudFormation intrinsics, and each Lambda task's
 * Resource becomes `arn:aws:lambda:<region>:<account>:function:<operation>`, the function's folder name.
 */
import { App } from 'aws-cdk-lib';
import type { StateMachineDefinition } from 'aws-local-stepfunctions';
import { buildApp } from '#infra/app.ts';

import { localFunctionName } from './functions.ts';
import { LOCAL_ACCOUNT, LOCAL_REGION, localFunctionArn } from './lambda-events.ts';

type Resources = Record<string, { Type: string; Properties?: Record<string, unknown> }>;
export interface Template {
  Resources: Resources;
}

/** Synthesizes the stack without bundling or cdk-nag (both are checked by `npm run synth` and the infra tests). */
export function synthesizeTemplate(stage = 'local'): Template {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [], stage } });
  const { stack } = buildApp(app, { nag: false });
  return app.synth().getStackByName(stack.stackName).template as Template;
}

function functionArn(resources: Resources, logicalId: string): string {
  return localFunctionArn(localFunctionName(resources[logicalId]?.Properties) ?? logicalId);
}

/** Resolves the intrinsics CDK puts in a definition: Fn::Join, Ref and Fn::GetAtt (TOOLING.md 3). */
export function resolve(value: unknown, resources: Resources): unknown {
  if (Array.isArray(value)) return value.map((v) => resolve(v, resources));
  if (value === null || typeof value !== 'object') return value;
  const v = value as Record<string, unknown>;
  if ('Fn::Join' in v) {
    const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map((p) => String(resolve(p, resources))).join(sep);
  }
  if ('Ref' in v) {
    const ref = String(v.Ref);
    const pseudo: Record<string, string> = {
      'AWS::Partition': 'aws',
      'AWS::Region': LOCAL_REGION,
      'AWS::AccountId': LOCAL_ACCOUNT,
      'AWS::URLSuffix': 'amazonaws.com',
    };
    if (pseudo[ref]) return pseudo[ref];
    // A bucket's Ref is its name: the local name is the logical id, lower-cased.
    return ref.toLowerCase();
  }
  if ('Fn::GetAtt' in v) {
    const [id, attr] = v['Fn::GetAtt'] as [string, string];
    if (resources[id]?.Type === 'AWS::Lambda::Function' && attr === 'Arn') return functionArn(resources, id);
    if (resources[id]?.Type === 'AWS::S3::Bucket' && attr === 'Arn') return `arn:aws:s3:::${id.toLowerCase()}`;
    return `arn:aws:${id}:${attr}`;
  }
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolve(x, resources)]));
}

export interface ExtractedMachine {
  definition: StateMachineDefinition;
  /** The batch bucket's local name (its logical id, lower-cased), as the definition refers to it. */
  bucket: string;
}

export function extractStateMachine(template: Template): ExtractedMachine {
  const entry = Object.entries(template.Resources).find(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine');
  if (!entry) throw new Error('the template has no state machine');
  const definition = JSON.parse(
    String(resolve(entry[1].Properties?.DefinitionString, template.Resources)),
  ) as StateMachineDefinition;
  const bucket =
    Object.entries(template.Resources)
      .find(([, r]) => r.Type === 'AWS::S3::Bucket')?.[0]
      ?.toLowerCase() ?? 'batches';
  return { definition, bucket };
}

let template: Template | undefined;
/** This checkout's stack, synthesized once per process. */
export function localTemplate(): Template {
  template ??= synthesizeTemplate();
  return template;
}

let cached: ExtractedMachine | undefined;
/** The definition of this checkout's stack, synthesized once per process. */
export function batchStateMachine(): ExtractedMachine {
  cached ??= extractStateMachine(localTemplate());
  return cached;
}
