/**
 * deploy/kubernetes rendered by `kubectl kustomize` (base and the try-postgres overlay): every
 * object is valid for the Kubernetes API (schema and types, `kube.ts`), nothing secret is
 * inlined, and what the manifests say about the issuer is what the issuer reads: the rendered
 * ConfigMap passes the issuer's own config loader (`loadConfigText` with ISSUER_ROLE, the one
 * `edgeward issuer` runs), the probes, the Service and the NetworkPolicy use the ports that config
 * listens on, and every file it names lies in a volume of the issuer's container. That the
 * issuer really serves the probe paths there is image.test.ts's part (it runs the bundle).
 */
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { IssuerConfig } from '../../runtime/config/issuer-schema.ts';
import { ISSUER_ROLE, loadConfigText } from '../../runtime/config/load.ts';
import type { ConfigError } from '../../runtime/errors.ts';
import { isPkcs11Uri, parsePkcs11Uri } from '../../runtime/issuer/pkcs11/uri.ts';
import {
  inlinedSecrets,
  type K8sNode,
  type K8sObject,
  KUBERNETES,
  nameOf,
  podTemplates,
  render,
  schemaProblems,
  typeProblems,
} from './kube.ts';

const rendered = {
  base: await render(join(KUBERNETES, 'base')),
  overlay: await render(join(KUBERNETES, 'overlays', 'try-postgres')),
  hsm: await render(join(KUBERNETES, 'overlays', 'hsm')),
};
const all = [...rendered.base, ...rendered.overlay, ...rendered.hsm];
const variants = [rendered.base, rendered.overlay, rendered.hsm];

function one(objects: readonly K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  assert.is(found.length, 1, `exactly one ${kind} ${name ?? ''}`);
  return found[0] as K8sObject;
}

/** The issuer's config as the Deployment mounts it, loaded by the issuer's own loader. */
function issuerConfig(objects: readonly K8sObject[]): { cfg: IssuerConfig; path: string } {
  const pod = one(objects, 'Deployment', 'edgeward-issuer').spec.template.spec;
  const issuer = pod.containers.find((c: K8sNode) => c.name === 'issuer');
  const path = issuer.args[issuer.args.indexOf('--config') + 1] as string;
  const mount = issuer.volumeMounts.find((m: K8sNode) => path.startsWith(`${m.mountPath}/`));
  assert.ok(mount, `${path} is in a volume of the issuer container`);
  const volume = pod.volumes.find((v: K8sNode) => v.name === mount.name);
  const cm = one(objects, 'ConfigMap', volume.configMap?.name);
  const text = cm.data[path.slice(mount.mountPath.length + 1)];
  assert.type(text, 'string', `the ConfigMap holds ${path}`);
  return { cfg: loadConfigText(text, ISSUER_ROLE, {}, path), path };
}

test('base and overlay: every object is valid for the Kubernetes API (schema and types)', () => {
  assert.equal(
    rendered.base.map(nameOf).sort(),
    [
      `ConfigMap/edgeward-issuer-config-${one(rendered.base, 'ConfigMap').metadata.name.split('-').pop()}`,
      'Deployment/edgeward-issuer',
      'HorizontalPodAutoscaler/edgeward-issuer',
      'Job/edgeward-issuer-migrate',
      'NetworkPolicy/edgeward-issuer',
      'PodDisruptionBudget/edgeward-issuer',
      'Service/edgeward-issuer',
      'ServiceAccount/edgeward-issuer',
    ].sort(),
  );
  for (const kind of ['StatefulSet', 'Service', 'NetworkPolicy'])
    assert.ok(one(rendered.overlay, kind, 'edgeward-postgres'));
  assert.equal(schemaProblems(all), []);
  assert.equal(typeProblems(all), []);
});

test('the API checks refuse a wrong type, a missing field and an unknown field', () => {
  const bad = structuredClone(one(rendered.base, 'Deployment'));
  bad.spec.replicas = '3';
  assert.match(schemaProblems([bad]).join('\n'), /replicas must be integer/);
  const noSelector = structuredClone(one(rendered.base, 'PodDisruptionBudget'));
  noSelector.spec = { maxUnavailable: 1, selectr: {} };
  assert.match(typeProblems([noSelector]).join('\n'), /'"selectr"' does not exist/);
  const typo = structuredClone(one(rendered.base, 'Deployment'));
  typo.spec.template.spec.containers[0].readinesProbe = typo.spec.template.spec.containers[0].readinessProbe;
  assert.match(typeProblems([typo]).join('\n'), /'"readinesProbe"' does not exist in type 'IContainer'/);
  assert.match(schemaProblems([{ apiVersion: 'v9', kind: 'Thing' }]).join(), /no schema for v9 Thing/);
});

test('the rendered config passes the issuer config loader; ports and probes match it', () => {
  for (const objects of variants) {
    const { cfg } = issuerConfig(objects);
    assert.ok(cfg.store.postgres, 'replicas share PostgreSQL');
    assert.is(cfg.health?.host, '0.0.0.0', 'the kubelet probes the pod address, not loopback');
    const dep = one(objects, 'Deployment', 'edgeward-issuer');
    const c = dep.spec.template.spec.containers.find((x: K8sNode) => x.name === 'issuer');
    const port = (name: string) => c.ports.find((p: K8sNode) => p.name === name)?.containerPort;
    assert.is(port('health'), cfg.health?.port);
    assert.is(port('https'), cfg.listen.port);
    assert.equal(c.livenessProbe.httpGet, { path: '/healthz', port: 'health' });
    assert.equal(c.readinessProbe.httpGet, { path: '/readyz', port: 'health' });
    const svc = one(objects, 'Service', 'edgeward-issuer');
    assert.equal(svc.spec.ports, [{ name: 'https', port: 8443, targetPort: 'https', protocol: 'TCP' }]);
    assert.equal(svc.spec.selector, dep.spec.selector.matchLabels);
    const np = one(objects, 'NetworkPolicy', 'edgeward-issuer');
    assert.equal(np.spec.policyTypes, ['Ingress', 'Egress']);
    assert.equal(
      np.spec.ingress.flatMap((r: K8sNode) => r.ports.map((p: K8sNode) => p.port)).sort(),
      [cfg.listen.port, cfg.health?.port].sort(),
    );
    assert.ok(np.spec.ingress.every((r: K8sNode) => r.from === undefined));
    assert.equal(
      np.spec.egress.flatMap((r: K8sNode) => r.ports.map((p: K8sNode) => `${p.port}/${p.protocol}`)),
      ['5432/TCP', '53/UDP', '53/TCP'],
    );
    for (const [k, v] of Object.entries(np.spec.podSelector.matchLabels))
      assert.is(dep.spec.template.metadata.labels[k], v);
  }
});

test('every file the config names and the admin socket are in volumes of the issuer container', () => {
  for (const objects of variants) {
    const { cfg } = issuerConfig(objects);
    const pod = one(objects, 'Deployment', 'edgeward-issuer').spec.template.spec;
    const issuer = pod.containers.find((c: K8sNode) => c.name === 'issuer');
    const files = [
      cfg.listen.certificate,
      cfg.listen.key,
      cfg.ca.certificate,
      isPkcs11Uri(cfg.ca.key) ? undefined : cfg.ca.key,
      cfg.store.postgres?.passwordFile,
      cfg.store.postgres?.caFile,
      cfg.ca.pkcs11?.pinFile,
    ].filter((f): f is string => f !== undefined);
    const installed = pod.initContainers
      .find((c: K8sNode) => c.name === 'install-secrets')
      .args.map((a: string) => a.split('=')[1]);
    for (const f of files) {
      const mount = issuer.volumeMounts.find((m: K8sNode) => f.startsWith(`${m.mountPath}/`));
      assert.ok(mount, `${f} lies in a volume`);
      const volume = pod.volumes.find((v: K8sNode) => v.name === mount.name);
      assert.equal(volume.emptyDir?.medium, 'Memory', `${f}: keys only in memory`);
      assert.ok(
        installed.some((d: string) => f.startsWith(`${d}/`)),
        `${f} is installed by the init container`,
      );
    }
    const socket = cfg.admin?.socket as string;
    const mount = issuer.volumeMounts.find((m: K8sNode) => socket.startsWith(`${m.mountPath}/`));
    assert.ok(mount && mount.readOnly !== true, 'the admin socket is in a writable volume');
    // An emptyDir is world-writable; the issuer refuses a socket directly in one.
    assert.is.not(socket.slice(0, socket.lastIndexOf('/')), mount.mountPath);
  }
});

test('hsm overlay: a pkcs11: CA key the issuer accepts, its PIN from the Secret, the vendor module read-only', () => {
  const { cfg } = issuerConfig(rendered.hsm);
  assert.ok(isPkcs11Uri(cfg.ca.key), cfg.ca.key);
  assert.ok(parsePkcs11Uri(cfg.ca.key).object);
  assert.is(cfg.ca.next, undefined, 'the CA rotates in the token: no ca.next');
  const p = cfg.ca.pkcs11 as NonNullable<IssuerConfig['ca']['pkcs11']>;
  const pod = one(rendered.hsm, 'Deployment', 'edgeward-issuer').spec.template.spec;
  const issuer = pod.containers.find((c: K8sNode) => c.name === 'issuer');
  const mount = issuer.volumeMounts.find((m: K8sNode) => p.module.startsWith(`${m.mountPath}/`));
  assert.ok(mount?.readOnly, `${p.module} lies in a read-only volume of the issuer`);
  const filler = pod.initContainers.find((c: K8sNode) =>
    c.volumeMounts.some((m: K8sNode) => m.name === mount.name && m.readOnly !== true),
  );
  assert.ok(filler, 'an init container puts the vendor module there');
  assert.ok(pod.volumes.find((v: K8sNode) => v.name === mount.name).emptyDir, 'no hostPath');
  // The PIN: Secret edgeward-issuer-pkcs11, installed 0600 into the memory volume.
  const install = pod.initContainers.find((c: K8sNode) => c.name === 'install-secrets');
  const [src, dest] = install.args
    .map((a: string) => a.split('='))
    .find(([, d]: string[]) => p.pinFile.startsWith(`${d}/`));
  const srcMount = install.volumeMounts.find((m: K8sNode) => m.mountPath === src);
  assert.is(
    pod.volumes.find((v: K8sNode) => v.name === srcMount.name).secret.secretName,
    'edgeward-issuer-pkcs11',
  );
  assert.ok(dest.startsWith('/run/edgeward/'));
  // The same config with a pkcs11: key and no ca.pkcs11 is refused by the issuer's validator.
  const text = one(rendered.hsm, 'ConfigMap').data['issuer.yaml'] as string;
  const broken = text.replace(/\n {2}pkcs11:\n(?: {4}\S.*\n)+/, '\n');
  assert.not.match(broken, /pinFile/);
  assert.throws(
    () => loadConfigText(broken, ISSUER_ROLE, {}, 'issuer.yaml'),
    (e: ConfigError) =>
      e.code === 'ERR_CONFIG_INVALID' && /ca\.key: is a PKCS#11 URI: set ca\.pkcs11/.test(e.message),
  );
});

test('pods: non-root, read-only root, no escalation, no capabilities, RuntimeDefault seccomp', () => {
  const pods = podTemplates(all);
  assert.is(pods.length, 7); // issuer and migrate three times, postgres once
  for (const { owner, spec } of pods) {
    assert.is(spec.securityContext.runAsNonRoot, true, owner);
    assert.is(spec.securityContext.seccompProfile.type, 'RuntimeDefault', owner);
    assert.is(spec.automountServiceAccountToken, false, owner);
    for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
      const sc = c.securityContext;
      const what = `${owner} ${c.name}`;
      assert.is(sc.runAsNonRoot, true, what);
      assert.is(sc.readOnlyRootFilesystem, true, what);
      assert.is(sc.allowPrivilegeEscalation, false, what);
      assert.equal(sc.capabilities.drop, ['ALL'], what);
      assert.is(sc.seccompProfile.type, 'RuntimeDefault', what);
      assert.ok(c.resources.requests.cpu && c.resources.limits.memory, `${what}: resources`);
    }
    for (const v of spec.volumes ?? []) {
      // Secrets are referenced by name, their files readable by the owner (and fsGroup) only.
      if (v.secret !== undefined) assert.ok((v.secret.defaultMode & 0o007) === 0, `${owner} ${v.name}`);
    }
  }
});

test('Deployment, autoscaler, disruption budget and migrate Job', () => {
  const dep = one(rendered.base, 'Deployment');
  assert.is(dep.spec.replicas, 3);
  const anti = dep.spec.template.spec.affinity.podAntiAffinity;
  const term = anti.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm;
  assert.is(term.topologyKey, 'kubernetes.io/hostname');
  assert.equal(term.labelSelector.matchLabels, dep.spec.selector.matchLabels);
  const hpa = one(rendered.base, 'HorizontalPodAutoscaler');
  assert.equal(hpa.spec.scaleTargetRef, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    name: dep.metadata.name,
  });
  assert.is(hpa.spec.minReplicas, 3);
  assert.is(hpa.spec.maxReplicas, 10);
  assert.equal(hpa.spec.metrics, [
    { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 80 } } },
  ]);
  const pdb = one(rendered.base, 'PodDisruptionBudget');
  assert.equal(pdb.spec.selector.matchLabels, dep.spec.selector.matchLabels);
  const job = one(rendered.base, 'Job').spec.template.spec;
  const issuerArgs = dep.spec.template.spec.containers[0].args;
  assert.equal(job.containers[0].args, ['migrate', ...issuerArgs]);
  assert.is(job.containers[0].image, dep.spec.template.spec.containers[0].image);
  // The Job's pods are not the Deployment's: the Service and the budget do not count them.
  const jobLabels = one(rendered.base, 'Job').spec.template.metadata.labels;
  assert.not.ok(
    Object.entries(dep.spec.selector.matchLabels).every(([k, v]) => jobLabels[k] === v),
    'the Deployment selects no migrate pod',
  );
});

test('no secret is inlined; the guard finds one in a ConfigMap, a Secret object, an env value', () => {
  assert.equal(inlinedSecrets(all), []);
  const cm = structuredClone(one(rendered.base, 'ConfigMap'));
  const text = cm.data['issuer.yaml'] as string;
  const withPassword = structuredClone(cm);
  withPassword.data['issuer.yaml'] = text.replace(
    /passwordFile: \S+/,
    'password: correct-horse-battery-staple',
  );
  assert.match(inlinedSecrets([withPassword]).join('\n'), /issuer\.yaml:\d+: 'password' holds a value/);
  const withUrl = structuredClone(cm);
  withUrl.data['issuer.yaml'] = text.replace('postgresql://edgeward@', 'postgresql://edgeward:hunter2@');
  assert.match(inlinedSecrets([withUrl]).join('\n'), /a URL with a password/);
  const withKey = structuredClone(cm);
  withKey.data['ca.key'] = '-----BEGIN PRIVATE KEY-----\nMIG...\n-----END PRIVATE KEY-----\n';
  assert.match(inlinedSecrets([withKey]).join('\n'), /holds a PEM private key/);
  const secret = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'edgeward-issuer-db' }, data: {} };
  assert.match(inlinedSecrets([secret]).join('\n'), /a Secret in the manifests/);
  const sts = structuredClone(one(rendered.overlay, 'StatefulSet'));
  sts.spec.template.spec.containers[0].env.push({ name: 'POSTGRES_PASSWORD', value: 'hunter2' });
  assert.match(inlinedSecrets([sts]).join('\n'), /env POSTGRES_PASSWORD holds a value/);
});

test.run();
