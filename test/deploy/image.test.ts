/**
 * What the image ships, run the way the manifests run it. No container engine runs here, so the
 * test builds what deploy/Containerfile copies into the image (`npm run build:issuer`, the same
 * code), reads the Containerfile's runtime stage, and runs the pods of the rendered try-postgres
 * overlay from it (`pod.ts`: volumes laid out as the kubelet does, container paths mapped):
 * each container with a read-only root filesystem but for its writable volumes, the
 * install-secrets init container, the migrate Job against a throw-away PostgreSQL
 * (test/helpers/postgres.ts; only the ConfigMap's database URL is swapped for it), then the
 * issuer with the ConfigMap's config in a network namespace of its own with a pod address, where
 * the kubelet's probes (the manifest's paths and port, on the pod address) get 200, and
 * `kubectl exec POD -- edgeward issuer token create` works through the admin socket. The base's
 * migrate Job runs too, against a cluster with TLS: `sslmode=verify-full` with the roots from the
 * Secret's `ca.crt` (other roots: ERR_ISSUER_STORE_AUTH).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseDocument } from 'yaml';
import { buildIssuer, IMAGE_NODE, PKCS11JS_FILES } from '../../deploy/image/build.ts';
import { readPrivateKeyFile } from '../../runtime/issuer/files.ts';
import { PW_PASSWORD, PW_ROLE, startPostgres, stopTestCluster, testDatabase } from '../helpers/postgres.ts';
import { rejects } from '../helpers/rejects.ts';
import { type K8sNode, type K8sObject, KUBERNETES, ROOT, render } from './kube.ts';
import {
  finished,
  type Image,
  jsonForm,
  lineMatching,
  podFromTemplate,
  runtimeStage,
  USERNS,
} from './pod.ts';

const POD_IP = '10.244.0.7';
const tmp = mkdtempSync(join(tmpdir(), 'edgeward-deploy-'));
const build = await buildIssuer({ out: join(tmp, 'image', 'app'), node: IMAGE_NODE });
const containerfile = readFileSync(join(ROOT, 'deploy', 'Containerfile'), 'utf8');
const stage = runtimeStage(containerfile);
const image: Image = {
  entrypoint: jsonForm(stage.lines, 'ENTRYPOINT'),
  cmd: jsonForm(stage.lines, 'CMD'),
  workdir: (stage.lines.find((l) => l.startsWith('WORKDIR ')) as string).slice(8),
  path: (stage.lines.find((l) => l.startsWith('ENV PATH=')) as string).slice(9).split(':'),
  node: IMAGE_NODE,
  files: { '/app': build.dir },
};
const objects = await render(join(KUBERNETES, 'overlays', 'try-postgres'));
const template = (kind: string, from = objects) =>
  (from.find((o) => o.kind === kind && o.metadata.name.startsWith('edgeward-issuer')) as K8sObject).spec
    .template.spec;
// The CA and TLS material an operator puts in the Secrets (README), from the bundle's own dev-ca.
const devca = join(tmp, 'devca');
assert.is(
  (
    await finished(
      spawn(process.execPath, [
        join(build.dir, 'bin', 'edgeward'),
        'issuer',
        'dev-ca',
        '--dir',
        devca,
        '--trust-domain',
        'fleet.example',
      ]),
    )
  ).code,
  0,
);
const file = (f: string) => readFileSync(join(devca, f));

/** The rendered ConfigMaps with the database URL swapped for a throw-away cluster's. */
function withDatabase(from: readonly K8sObject[], url: string): K8sObject[] {
  return from
    .filter((o) => o.kind === 'ConfigMap')
    .map((cm) => {
      const doc = parseDocument(cm.data['issuer.yaml'] as string);
      doc.setIn(['store', 'postgres', 'url'], url);
      return { ...cm, data: { ...cm.data, 'issuer.yaml': doc.toString() } };
    });
}

test.after(async () => {
  await stopTestCluster();
  rmSync(tmp, { recursive: true, force: true });
});

test('the Containerfile: build, pkcs11 and runtime stages, a runtime stage that installs nothing, runs as the pods user', () => {
  // The bundle is built once on the build platform; the native pkcs11js binding on the target's.
  assert.equal(containerfile.match(/^FROM\s.*$/gm), [
    'FROM --platform=$BUILDPLATFORM docker.io/library/node:20-bookworm-slim AS build',
    'FROM docker.io/library/node:20-bookworm AS pkcs11',
    'FROM gcr.io/distroless/nodejs20-debian12:nonroot',
  ]);
  assert.match(stage.from, /^FROM gcr\.io\/distroless\/nodejs20-debian12:nonroot$/);
  assert.equal(
    stage.lines.filter((l) => /^RUN\s/.test(l)),
    [],
    'no RUN: nothing installed in the runtime stage',
  );
  const pod = template('Deployment');
  assert.ok(stage.lines.includes(`USER ${pod.securityContext.runAsUser}:${pod.securityContext.runAsGroup}`));
  assert.ok(stage.lines.includes('COPY --from=build --chown=0:0 /src/dist/issuer /app'));
  // The build stage builds what this test built, from every folder the bundle is made of.
  assert.match(containerfile, new RegExp(`RUN npm run build:issuer -- --node ${IMAGE_NODE}\\n`));
  for (const folder of build.sourceFolders)
    assert.match(containerfile, new RegExp(`^COPY ${folder} ${folder}$`, 'm'), `COPY ${folder}`);
  assert.equal(image.entrypoint, ['/app/bin/edgeward', 'issuer']);
  const ports = pod.containers[0].ports.map((p: K8sNode) => p.containerPort);
  assert.ok(stage.lines.includes(`EXPOSE ${ports.join(' ')}`), 'EXPOSE names the ports the pod declares');
  assert.equal(image.cmd, pod.containers[0].args, "the image's default is the Deployment's command line");
  assert.is(pod.initContainers[0].command[0], IMAGE_NODE);
  // The bundle only: beside it, classic-level and exactly its dependencies (no npm, no sources).
  assert.equal(readdirSync(build.dir).sort(), [
    'bin',
    'edgeward.mjs',
    'install-secrets.mjs',
    'lib',
    'node_modules',
  ]);
  const modules = join(build.dir, 'node_modules');
  const needed = new Set<string>();
  const visit = (name: string) => {
    if (needed.has(name)) return;
    needed.add(name);
    const pkg = JSON.parse(readFileSync(join(modules, name, 'package.json'), 'utf8'));
    for (const dep of Object.keys(pkg.dependencies ?? {})) visit(dep);
  };
  visit('classic-level');
  // The optional PKCS#11 binding: built here, shipped as its addon and loader only; the image's
  // own copy comes from the Containerfile's pkcs11 stage, with the same files.
  if (build.pkcs11js) {
    needed.add('pkcs11js');
    assert.equal(readdirSync(join(modules, 'pkcs11js')).sort(), [
      'LICENSE',
      'build',
      'index.js',
      'package.json',
    ]);
  }
  assert.ok(stage.lines.includes('COPY --from=pkcs11 --chown=0:0 /out/pkcs11js /app/node_modules/pkcs11js'));
  for (const f of PKCS11JS_FILES)
    assert.ok(
      containerfile.includes(
        f.includes('/') ? `cp ${f} /out/pkcs11js/${f.slice(0, f.lastIndexOf('/'))}/` : ` ${f}`,
      ),
      `the pkcs11 stage keeps ${f}`,
    );
  assert.equal(readdirSync(modules).sort(), [...needed].sort());
  assert.ok(readdirSync(join(build.dir, 'lib')).every((f) => /\.mjs(\.LEGAL\.txt)?$/.test(f)));
});

test('the overlay pods run from the image: install-secrets, migrate, the issuer probed as the kubelet does', async () => {
  const secrets = {
    'edgeward-issuer-tls': { 'tls.crt': file('tls.pem'), 'tls.key': file('tls.key') },
    'edgeward-issuer-ca': { 'ca.crt': file('ca.pem'), 'ca.key': file('ca.key') },
    'edgeward-issuer-db': { password: `${PW_PASSWORD}\n` },
  };
  // The ConfigMap as rendered, but for the database URL: the throw-away cluster's.
  const db = await testDatabase('deploy');
  const configMaps = withDatabase(objects, db.cluster.url(db.name, PW_ROLE));

  // The migrate Job's pod: its init container, then `edgeward issuer migrate`.
  const jobSpec = template('Job');
  const job = podFromTemplate(jobSpec, { root: join(tmp, 'job'), image, configMaps, secrets });
  assert.is((await finished(job.run(jobSpec.initContainers[0]))).code, 0);
  const migrated = await finished(job.run(jobSpec.containers[0]));
  assert.is(migrated.code, 0, migrated.err);
  assert.match(migrated.out, /PostgreSQL issuer schema migrated from version \d+ to \d+/);

  // The issuer's pod.
  const spec = template('Deployment');
  const pod = podFromTemplate(spec, { root: join(tmp, 'issuer'), image, configMaps, secrets });
  const [init, issuer] = [spec.initContainers[0], spec.containers[0]];
  // Mounted as Kubernetes mounts them, the keys are group-readable: the issuer refuses them.
  await rejects(
    () => readPrivateKeyFile(pod.map('/mnt/secrets/ca/ca.key', init)),
    'ERR_ISSUER_KEY_PERMISSIONS',
  );
  const installed = await finished(pod.run(init));
  assert.is(installed.code, 0, installed.err);
  assert.match(installed.out, /\/secrets\/ca: ca\.crt, ca\.key\n/);
  assert.match(installed.out, /\/secrets\/pkcs11: nothing \(no Secret mounted\)\n/);
  for (const f of ['tls/tls.key', 'ca/ca.key', 'db/password'])
    assert.is(statSync(pod.map(`/run/edgeward/secrets/${f}`, issuer)).mode & 0o777, 0o600, f);
  assert.is(statSync(pod.map('/run/edgeward/secrets/ca', issuer)).mode & 0o777, 0o700);

  // The root filesystem is read-only to it, as in the pod (the issuer writing outside its
  // volumes would fail here as there).
  const write = await finished(
    pod.run({
      ...issuer,
      command: [
        IMAGE_NODE,
        '-e',
        "require('node:fs').writeFileSync(require('node:os').tmpdir() + '.ro', '')",
      ],
      args: [],
      env: [{ name: 'TMPDIR', value: tmp }],
    }),
  );
  assert.match(write.err, /EROFS: read-only file system/);

  // Its own network: loopback and the pod address, so the ports are the manifests' own.
  const child = pod.run(issuer, { podIp: POD_IP });
  const done = finished(child);
  try {
    const port = (name: string) => issuer.ports.find((p: K8sNode) => p.name === name).containerPort as number;
    await lineMatching(child, new RegExp(`^health http://0\\.0\\.0\\.0:${port('health')}$`));
    const probes = [issuer.livenessProbe, issuer.readinessProbe, issuer.startupProbe].map((p) => ({
      url: `http://${POD_IP}:${port(p.httpGet.port)}${p.httpGet.path}`,
    }));
    const api = { url: `https://${POD_IP}:${port('https')}/v1/bundle`, ca: file('ca.pem').toString() };
    const answers = await inPodNetwork(child.pid as number, [
      ...probes,
      api,
      { url: `http://${POD_IP}:${port('health')}/nope` },
    ]);
    assert.equal(answers.slice(0, 3), [
      { status: 200, body: 'ok\n' },
      { status: 200, body: 'ready\n' },
      { status: 200, body: 'ok\n' },
    ]);
    assert.is(answers[3]?.status, 200, 'the API answers on the Service port');
    assert.is(answers[4]?.status, 404);

    // kubectl exec POD -- edgeward issuer token create --name gw-1 --config /etc/edgeward/issuer.yaml
    const token = await finished(
      pod.run({
        ...issuer,
        command: ['edgeward', 'issuer', 'token', 'create', '--name', 'gw-1', ...issuer.args],
        args: [],
      }),
    );
    assert.is(token.code, 0, token.err);
    assert.match(token.out, /^\S{16,}\n$/);
  } finally {
    child.kill('SIGTERM');
  }
  const stopped = await done;
  assert.is(stopped.code, 0, stopped.err);
  assert.match(stopped.out, /edgeward issuer stopped/);
});

test("the base's migrate Job: the database's TLS roots from the Secret, sslmode=verify-full", async () => {
  const base = await render(join(KUBERNETES, 'base'));
  const cluster = await startPostgres({ tls: { cert: file('tls.pem'), key: file('tls.key') } });
  try {
    await cluster.sql(`GRANT CREATE ON DATABASE postgres TO ${PW_ROLE}`);
    const url = `postgresql://${PW_ROLE}@127.0.0.1:${cluster.port}/postgres?sslmode=verify-full`;
    const spec = template('Job', base);
    const run = async (roots: Buffer) => {
      const job = podFromTemplate(spec, {
        root: mkdtempSync(join(tmp, 'base-job-')),
        image,
        configMaps: withDatabase(base, url),
        secrets: { 'edgeward-issuer-db': { password: PW_PASSWORD, 'ca.crt': roots } },
      });
      assert.is((await finished(job.run(spec.initContainers[0]))).code, 0);
      return finished(job.run(spec.containers[0]));
    };
    // Roots that did not sign the server's certificate: refused, typed.
    const other = join(tmp, 'other-ca');
    await finished(
      spawn(process.execPath, [
        join(build.dir, 'bin', 'edgeward'),
        'issuer',
        'dev-ca',
        '--dir',
        other,
        '--trust-domain',
        'db.example',
      ]),
    );
    const refused = await run(readFileSync(join(other, 'ca.pem')));
    assert.is(refused.code, 1);
    assert.match(refused.err, /ERR_ISSUER_STORE_AUTH/);
    const migrated = await run(file('ca.pem'));
    assert.is(migrated.code, 0, migrated.err);
    assert.match(migrated.out, /PostgreSQL issuer schema migrated from version 0 to \d+/);
  } finally {
    await cluster.stop();
  }
});

/** HTTP(S) GETs from inside the network namespace of `pid` (nsenter), as the kubelet's probes. */
async function inPodNetwork(
  pid: number,
  requests: { url: string; ca?: string }[],
): Promise<{ status: number; body: string }[]> {
  const script = `
    const reqs = JSON.parse(process.argv[1]);
    Promise.all(reqs.map((r) => new Promise((resolve) => {
      const mod = require(r.url.startsWith('https:') ? 'node:https' : 'node:http');
      mod.get(r.url, r.ca ? { ca: r.ca, servername: 'localhost' } : {}, (res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => resolve({ status: res.statusCode, body: r.ca ? '' : body }));
      }).on('error', (e) => resolve({ status: 0, body: e.code }));
    }))).then((a) => console.log(JSON.stringify(a)));`;
  const child = spawn('nsenter', [
    '-t',
    String(pid),
    ...(USERNS.length === 0 ? [] : ['--user', '--preserve-credentials']),
    '--net',
    process.execPath,
    '-e',
    script,
    JSON.stringify(requests),
  ]);
  const r = await finished(child);
  assert.is(r.code, 0, r.err);
  return JSON.parse(r.out) as { status: number; body: string }[];
}

test.run();
