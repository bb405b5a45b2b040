/**
 * Checking Kubernetes manifests without a cluster, for test/deploy: render a kustomization with
 * `kubectl kustomize` (kubectl's built-in kustomize; Debian's kubernetes-client, installed by
 * `npm test`), then check every object against the Kubernetes API twice, both from the
 * `kubernetes-models` package (generated from the API's OpenAPI document):
 * - `validate()`: the JSON schema (types, required fields, formats such as int32 or
 *   int-or-string);
 * - the TypeScript checker on the object as a typed literal: it also refuses what the schema lets
 *   through, unknown fields (`readinesProbe`, which the API server's strict field validation,
 *   kubectl's default, refuses too).
 * And a guard against secrets inlined where Secrets must be referenced: a rendered Secret object
 * (secretGenerator or a Secret manifest), a private key, a password, PIN or token written as a
 * value in a ConfigMap, an environment variable or a database URL.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as appsV1 from 'kubernetes-models/apps/v1';
import * as autoscalingV2 from 'kubernetes-models/autoscaling/v2';
import * as batchV1 from 'kubernetes-models/batch/v1';
import * as networkingV1 from 'kubernetes-models/networking.k8s.io/v1';
import * as policyV1 from 'kubernetes-models/policy/v1';
import * as coreV1 from 'kubernetes-models/v1';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const KUBERNETES = join(ROOT, 'deploy', 'kubernetes');

/** A part of a manifest (a pod spec, a container), read loosely: the checks decide what it holds. */
// biome-ignore lint/suspicious/noExplicitAny: manifests are checked, not trusted, so read loosely
export type K8sNode = Record<string, any>;
export type K8sObject = K8sNode & { apiVersion: string; kind: string };

/** `kubectl kustomize DIR`, every document parsed. */
export async function render(dir: string): Promise<K8sObject[]> {
  const { stdout } = await promisify(execFile)('kubectl', ['kustomize', dir], {
    maxBuffer: 16 * 1024 * 1024,
  });
  return parseAllDocuments(stdout).map((d, i) => {
    if (d.errors.length > 0) throw new Error(`document ${i}: ${d.errors[0]?.message}`);
    return d.toJS() as K8sObject;
  });
}

export const nameOf = (o: K8sObject): string => `${o.kind}/${o.metadata?.name ?? '?'}`;

/** Every kind the manifests may use: its model class (schema) and its interface (for tsc). */
const KINDS: Record<
  string,
  { model: new (data: never) => { validate(): void }; module: string; type: string }
> = {
  'v1/ConfigMap': { model: coreV1.ConfigMap, module: 'v1', type: 'IConfigMap' },
  'v1/Secret': { model: coreV1.Secret, module: 'v1', type: 'ISecret' },
  'v1/Service': { model: coreV1.Service, module: 'v1', type: 'IService' },
  'v1/ServiceAccount': { model: coreV1.ServiceAccount, module: 'v1', type: 'IServiceAccount' },
  'apps/v1/Deployment': { model: appsV1.Deployment, module: 'apps/v1', type: 'IDeployment' },
  'apps/v1/StatefulSet': { model: appsV1.StatefulSet, module: 'apps/v1', type: 'IStatefulSet' },
  'batch/v1/Job': { model: batchV1.Job, module: 'batch/v1', type: 'IJob' },
  'autoscaling/v2/HorizontalPodAutoscaler': {
    model: autoscalingV2.HorizontalPodAutoscaler,
    module: 'autoscaling/v2',
    type: 'IHorizontalPodAutoscaler',
  },
  'policy/v1/PodDisruptionBudget': {
    model: policyV1.PodDisruptionBudget,
    module: 'policy/v1',
    type: 'IPodDisruptionBudget',
  },
  'networking.k8s.io/v1/NetworkPolicy': {
    model: networkingV1.NetworkPolicy,
    module: 'networking.k8s.io/v1',
    type: 'INetworkPolicy',
  },
};

const kindOf = (o: K8sObject) => KINDS[`${o.apiVersion}/${o.kind}`];

/** The API schema's complaints about each object (an unknown kind is one). */
export function schemaProblems(objects: readonly K8sObject[]): string[] {
  const problems: string[] = [];
  for (const o of objects) {
    const k = kindOf(o);
    if (k === undefined) {
      problems.push(`${nameOf(o)}: no schema for ${o.apiVersion} ${o.kind}`);
      continue;
    }
    try {
      new k.model(structuredClone(o) as never).validate();
    } catch (err) {
      problems.push(`${nameOf(o)}: ${(err as Error).message}`);
    }
  }
  return problems;
}

/**
 * The TypeScript checker's complaints: each object becomes `const oN: IKind = <its JSON>;` in a
 * file that exists only in memory, type-checked against kubernetes-models' declarations with
 * excess property checks (unknown fields) and the API's required fields.
 */
export function typeProblems(objects: readonly K8sObject[]): string[] {
  const file = join(ROOT, 'test', 'deploy', '__rendered__.ts');
  const modules = new Map<string, Set<string>>();
  const lines: string[] = [];
  objects.forEach((o, i) => {
    const k = kindOf(o);
    if (k === undefined) return;
    const types = modules.get(k.module) ?? new Set<string>();
    modules.set(k.module, types.add(k.type));
    lines[i] = `export const o${i}: ${k.type} = ${JSON.stringify(o)};`;
  });
  // One declaration file per kind, not the API group's index (which loads every kind of the group).
  const header = [...modules].flatMap(([m, types]) =>
    [...types].map((t) => `import type { ${t} } from 'kubernetes-models/${m}/${t.slice(1)}';`),
  );
  const text = [...header, ...objects.map((_, i) => lines[i] ?? '')].join('\n');
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    lib: ['lib.es2022.d.ts'],
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    exactOptionalPropertyTypes: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, lang, ...rest) =>
    name === file ? ts.createSourceFile(name, text, lang) : getSourceFile.call(host, name, lang, ...rest);
  host.fileExists = (name) => name === file || fileExists.call(host, name);
  host.readFile = (name) => (name === file ? text : readFile.call(host, name));
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (d.file?.fileName !== file || d.start === undefined) return message;
    const line = d.file.getLineAndCharacterOfPosition(d.start).line - header.length;
    const o = objects[line];
    return `${o === undefined ? `line ${line}` : nameOf(o)}: ${message}`;
  });
}

/** The pod templates of the workloads, with who owns them. */
export function podTemplates(objects: readonly K8sObject[]): { owner: string; spec: K8sNode }[] {
  return objects
    .filter((o) => ['Deployment', 'StatefulSet', 'Job'].includes(o.kind))
    .map((o) => ({ owner: nameOf(o), spec: o.spec.template.spec }));
}

const SECRET_KEY = /(^|[^a-z])(password|passwd|pin|secret|token|private[-_]?key)$/i;
const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/**
 * Secrets written into the manifests instead of referenced: a rendered Secret object, a PEM
 * private key anywhere, a YAML key named like a secret (password, pin, token, ...) with a value
 * in a ConfigMap, a URL carrying a password, an environment variable named like a secret with a
 * literal value. Keys that name a file (`passwordFile`, `pinFile`, `POSTGRES_PASSWORD_FILE`) are
 * references, not secrets.
 */
export function inlinedSecrets(objects: readonly K8sObject[]): string[] {
  const found: string[] = [];
  for (const o of objects) {
    if (o.kind === 'Secret') found.push(`${nameOf(o)}: a Secret in the manifests (reference it by name)`);
    if (PRIVATE_KEY.test(JSON.stringify(o))) found.push(`${nameOf(o)}: holds a PEM private key`);
    if (o.kind === 'ConfigMap') {
      for (const [file, text] of Object.entries<string>(o.data ?? {})) {
        for (const [n, line] of text.split('\n').entries()) {
          const code = line.replace(/(^|\s)#.*$/, '');
          for (const m of code.matchAll(/([\w-]+)\s*:\s*([^\s,}#][^,}#]*)/g)) {
            if (SECRET_KEY.test(m[1] as string))
              found.push(`${nameOf(o)} ${file}:${n + 1}: '${m[1]}' holds a value`);
          }
          if (/[a-z][a-z0-9+.-]*:\/\/[^/@\s:]+:[^/@\s]+@/i.test(code))
            found.push(`${nameOf(o)} ${file}:${n + 1}: a URL with a password`);
        }
      }
    }
  }
  for (const { owner, spec } of podTemplates(objects)) {
    for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
      for (const e of c.env ?? []) {
        if (SECRET_KEY.test(e.name) && e.value !== undefined)
          found.push(`${owner} container ${c.name}: env ${e.name} holds a value`);
      }
    }
  }
  return found;
}
