// A generated corpus of Kubernetes manifests for the compression and sync
// benchmarks, and for deriving the sync dictionary (scripts/derive-sync-dictionary).
//
// Origin: written here, modelled on what Helm charts render and GitOps
// repositories hold for a fleet of edge sites (the shape of the Deployments,
// Services, ConfigMaps, Secrets, ServiceAccounts, Ingresses, HPAs and CRDs of
// charts such as ingress-nginx, cert-manager, prometheus and plain
// `helm create` output): the labels Helm and kubectl write
// (app.kubernetes.io/*, helm.sh/chart), containers with env, probes,
// resources and volume mounts, ConfigMaps holding config files, Secrets of
// random bytes (base64, as the API returns them), and a few CRDs with
// openAPIV3Schema. Values vary with a seeded random, so runs are reproducible
// and two seeds give different objects of the same kinds. Sizes are those of
// such objects as compact JSON: Services and Secrets a few hundred bytes,
// Deployments 1.5-3 KB, CRDs several KB.

export type Random = () => number;

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

const apps = [
  'checkout', 'payments', 'inventory', 'catalog', 'orders', 'shipping', 'auth', 'gateway', 'search', 'recommendations',
  'notifications', 'billing', 'telemetry', 'scanner', 'pos-terminal', 'camera-ingest', 'plc-bridge', 'mqtt-broker',
  'edge-cache', 'metrics-agent', 'log-forwarder', 'ota-updater', 'kiosk', 'pricing', 'loyalty', 'fleet-sync',
];
const components = ['api', 'worker', 'frontend', 'scheduler', 'consumer', 'exporter', 'proxy', 'controller'];
const namespaces = ['default', 'retail', 'edge-system', 'monitoring', 'logging', 'ingress-nginx', 'cert-manager', 'factory', 'store-ops'];
const registries = ['registry.example.com', 'ghcr.io/example-org', 'quay.io/example', 'docker.io/library'];
const envNames = ['LOG_LEVEL', 'HTTP_PORT', 'DATABASE_URL', 'REDIS_HOST', 'OTEL_EXPORTER_OTLP_ENDPOINT', 'SITE_ID', 'REGION', 'FEATURE_FLAGS', 'GOMAXPROCS', 'JAVA_OPTS', 'TZ', 'CACHE_TTL_SECONDS'];
const groups = ['example.com', 'edge.example.io', 'factory.example.net', 'monitoring.coreos.com', 'cert-manager.io'];

function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

function int(random: Random, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

function hex(random: Random, length: number): string {
  let s = '';
  while (s.length < length) s += Math.floor(random() * 16).toString(16);
  return s;
}

function randomBase64(random: Random, bytes: number): string {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = Math.floor(random() * 256);
  return b.toString('base64');
}

function version(random: Random): string {
  return `${int(random, 0, 4)}.${int(random, 0, 30)}.${int(random, 0, 12)}`;
}

interface App {
  name: string;
  namespace: string;
  component: string;
  version: string;
  chartVersion: string;
  site: string;
}

function labels(app: App): Record<string, string> {
  return {
    'app.kubernetes.io/name': app.name,
    'app.kubernetes.io/instance': `${app.name}-${app.site}`,
    'app.kubernetes.io/version': app.version,
    'app.kubernetes.io/component': app.component,
    'app.kubernetes.io/part-of': 'edge-platform',
    'app.kubernetes.io/managed-by': 'Helm',
    'helm.sh/chart': `${app.name}-${app.chartVersion}`,
  };
}

function selector(app: App): Record<string, string> {
  return { 'app.kubernetes.io/name': app.name, 'app.kubernetes.io/instance': `${app.name}-${app.site}` };
}

function container(random: Random, app: App, name: string): Record<string, unknown> {
  const port = pick(random, [8080, 8443, 9090, 3000, 5000, 1883]);
  const env = Array.from({ length: int(random, 1, 6) }, () => {
    const n = pick(random, envNames);
    return random() < 0.2
      ? { name: n, valueFrom: { secretKeyRef: { name: `${app.name}-secrets`, key: n.toLowerCase().replace(/_/g, '-') } } }
      : { name: n, value: n === 'LOG_LEVEL' ? pick(random, ['info', 'debug', 'warn']) : n === 'SITE_ID' ? app.site : String(int(random, 1, 9000)) };
  });
  const c: Record<string, unknown> = {
    name,
    image: `${pick(random, registries)}/${app.name}:${app.version}`,
    imagePullPolicy: 'IfNotPresent',
    ports: [{ name: 'http', containerPort: port, protocol: 'TCP' }, ...(random() < 0.5 ? [{ name: 'metrics', containerPort: 9102, protocol: 'TCP' }] : [])],
    env,
    resources: {
      requests: { cpu: `${int(random, 1, 20) * 50}m`, memory: `${int(random, 1, 16) * 64}Mi` },
      limits: { cpu: `${int(random, 1, 8) * 250}m`, memory: `${int(random, 1, 16) * 128}Mi` },
    },
    securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] } },
  };
  if (random() < 0.8) {
    c['livenessProbe'] = { httpGet: { path: '/healthz', port: 'http' }, initialDelaySeconds: int(random, 5, 30), periodSeconds: 10, timeoutSeconds: 1, failureThreshold: 3 };
    c['readinessProbe'] = { httpGet: { path: '/ready', port: 'http' }, initialDelaySeconds: int(random, 1, 10), periodSeconds: 5 };
  }
  if (random() < 0.6) {
    c['volumeMounts'] = [
      { name: 'config', mountPath: `/etc/${app.name}`, readOnly: true },
      { name: 'tmp', mountPath: '/tmp' },
    ];
  }
  return c;
}

function deployment(random: Random, app: App): Manifest {
  const containers = [container(random, app, app.name)];
  if (random() < 0.25) containers.push(container(random, app, pick(random, ['sidecar', 'envoy', 'log-shipper'])));
  return {
    apiVersion: 'apps/v1',
    kind: pick(random, ['Deployment', 'Deployment', 'Deployment', 'StatefulSet']) === 'StatefulSet' ? 'StatefulSet' : 'Deployment',
    metadata: { name: `${app.name}-${app.component}`, namespace: app.namespace, labels: labels(app) },
    spec: {
      replicas: int(random, 1, 5),
      revisionHistoryLimit: 10,
      selector: { matchLabels: selector(app) },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: pick(random, [0, 1, '25%']) } },
      template: {
        metadata: {
          labels: { ...selector(app), 'app.kubernetes.io/component': app.component },
          annotations: { 'checksum/config': hex(random, 64), ...(random() < 0.5 ? { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9102' } : {}) },
        },
        spec: {
          serviceAccountName: app.name,
          securityContext: { fsGroup: 65532, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } },
          containers,
          volumes: [
            { name: 'config', configMap: { name: `${app.name}-config` } },
            { name: 'tmp', emptyDir: {} },
          ],
          ...(random() < 0.3 ? { nodeSelector: { 'kubernetes.io/os': 'linux', 'node-role.example.com/edge': 'true' } } : {}),
          ...(random() < 0.3 ? { tolerations: [{ key: 'node.example.com/dedicated', operator: 'Equal', value: 'edge', effect: 'NoSchedule' }] } : {}),
        },
      },
    },
  };
}

function service(random: Random, app: App): Manifest {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: `${app.name}-${app.component}`, namespace: app.namespace, labels: labels(app) },
    spec: {
      type: pick(random, ['ClusterIP', 'ClusterIP', 'ClusterIP', 'NodePort']),
      ports: [{ name: 'http', port: pick(random, [80, 443, 8080]), targetPort: 'http', protocol: 'TCP' }],
      selector: selector(app),
    },
  };
}

function configFile(random: Random, app: App): Record<string, string> {
  switch (int(random, 0, 3)) {
    case 0:
      return {
        'application.properties': Array.from({ length: int(random, 4, 14) }, () => `${app.name}.${pick(random, ['http', 'db', 'cache', 'queue'])}.${pick(random, ['timeout', 'pool-size', 'retries', 'url', 'enabled'])}=${int(random, 1, 5000)}`).join('\n'),
      };
    case 1:
      return {
        'config.yaml': `server:\n  port: ${int(random, 1024, 9999)}\n  readTimeout: ${int(random, 1, 60)}s\nlog:\n  level: ${pick(random, ['info', 'debug'])}\n  format: json\nsite: ${app.site}\nupstreams:\n${Array.from({ length: int(random, 1, 4) }, () => `  - http://${pick(random, apps)}.${pick(random, namespaces)}.svc.cluster.local:${pick(random, [80, 8080])}`).join('\n')}\n`,
      };
    case 2:
      return {
        'nginx.conf': `worker_processes auto;\nevents { worker_connections ${int(random, 512, 4096)}; }\nhttp {\n  server {\n    listen ${pick(random, [80, 8080])};\n    location / { proxy_pass http://${app.name}:${pick(random, [8080, 3000])}; proxy_read_timeout ${int(random, 10, 120)}s; }\n    location /healthz { return 200; }\n  }\n}\n`,
      };
    default:
      return Object.fromEntries(Array.from({ length: int(random, 2, 8) }, () => [pick(random, envNames), String(int(random, 0, 100000))]));
  }
}

function configMap(random: Random, app: App): Manifest {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `${app.name}-config`, namespace: app.namespace, labels: labels(app) }, data: configFile(random, app) };
}

function secret(random: Random, app: App): Manifest {
  const data: Record<string, string> = {};
  for (let i = int(random, 1, 4); i > 0; i--) data[pick(random, ['password', 'api-key', 'token', 'database-url', 'tls.key', 'client-secret'])] = randomBase64(random, int(random, 16, 64));
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name: `${app.name}-secrets`, namespace: app.namespace, labels: labels(app) }, type: 'Opaque', data };
}

function serviceAccount(_random: Random, app: App): Manifest {
  return { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: app.name, namespace: app.namespace, labels: labels(app) } };
}

function ingress(random: Random, app: App): Manifest {
  const host = `${app.name}.${app.site}.edge.example.com`;
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'Ingress',
    metadata: { name: app.name, namespace: app.namespace, labels: labels(app), annotations: { 'cert-manager.io/cluster-issuer': 'letsencrypt', 'nginx.ingress.kubernetes.io/proxy-body-size': `${int(random, 1, 64)}m` } },
    spec: {
      ingressClassName: 'nginx',
      tls: [{ hosts: [host], secretName: `${app.name}-tls` }],
      rules: [{ host, http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: `${app.name}-${app.component}`, port: { name: 'http' } } } }] } }],
    },
  };
}

function hpa(random: Random, app: App): Manifest {
  return {
    apiVersion: 'autoscaling/v2',
    kind: 'HorizontalPodAutoscaler',
    metadata: { name: `${app.name}-${app.component}`, namespace: app.namespace, labels: labels(app) },
    spec: {
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: `${app.name}-${app.component}` },
      minReplicas: 1,
      maxReplicas: int(random, 3, 20),
      metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: int(random, 50, 90) } } }],
    },
  };
}

function schemaProperty(random: Random, depth: number): Record<string, unknown> {
  const type = depth > 2 ? pick(random, ['string', 'integer', 'boolean']) : pick(random, ['string', 'integer', 'boolean', 'object', 'array']);
  const p: Record<string, unknown> = { type, description: `${pick(random, ['Specifies', 'Defines', 'Controls', 'Sets'])} the ${pick(random, ['interval', 'target', 'selector', 'policy', 'limit', 'endpoint'])} of the ${pick(random, ['resource', 'collector', 'sync', 'device', 'rollout'])}.` };
  if (type === 'object') p['properties'] = Object.fromEntries(Array.from({ length: int(random, 2, 5) }, () => [pick(random, ['name', 'enabled', 'interval', 'port', 'selector', 'labels', 'timeout', 'target', 'mode', 'replicas']), schemaProperty(random, depth + 1)]));
  if (type === 'array') p['items'] = schemaProperty(random, depth + 1);
  if (type === 'string' && random() < 0.3) p['enum'] = ['Always', 'IfNotPresent', 'Never'];
  if (type === 'integer') p['format'] = 'int32';
  return p;
}

function crd(random: Random, _app: App, index: number): Manifest {
  const group = pick(random, groups);
  const kind = `${pick(random, ['Device', 'Sensor', 'Rollout', 'Probe', 'Collector', 'Policy', 'Route', 'Gateway'])}${index}`;
  const plural = `${kind.toLowerCase()}s`;
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${group}`, annotations: { 'controller-gen.kubebuilder.io/version': 'v0.16.5' } },
    spec: {
      group,
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase() },
      scope: 'Namespaced',
      versions: [
        {
          name: 'v1alpha1',
          served: true,
          storage: true,
          subresources: { status: {} },
          schema: {
            openAPIV3Schema: {
              type: 'object',
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: { type: 'object', properties: Object.fromEntries(Array.from({ length: int(random, 4, 10) }, (_, i) => [`field${i}`, schemaProperty(random, 0)])) },
                status: { type: 'object', properties: { conditions: { type: 'array', items: { type: 'object', properties: { type: { type: 'string' }, status: { type: 'string' }, reason: { type: 'string' }, message: { type: 'string' }, lastTransitionTime: { type: 'string', format: 'date-time' } } } } } },
              },
            },
          },
        },
      ],
    },
  };
}

/** `count` manifests: groups of one application's objects, and now and then a CRD. */
export function generateCorpus(random: Random, count: number): Manifest[] {
  const out: Manifest[] = [];
  let crds = 0;
  while (out.length < count) {
    if (random() < 0.03) {
      out.push(crd(random, undefined as unknown as App, ++crds));
      continue;
    }
    const app: App = {
      name: `${pick(random, apps)}${random() < 0.5 ? '' : `-${int(random, 2, 99)}`}`,
      namespace: pick(random, namespaces),
      component: pick(random, components),
      version: version(random),
      chartVersion: version(random),
      site: `site-${String(int(random, 1, 400)).padStart(3, '0')}`,
    };
    const group: Manifest[] = [deployment(random, app), service(random, app), configMap(random, app), serviceAccount(random, app)];
    if (random() < 0.5) group.push(secret(random, app));
    if (random() < 0.3) group.push(ingress(random, app));
    if (random() < 0.3) group.push(hpa(random, app));
    for (const m of group) if (out.length < count) out.push(m);
  }
  return out;
}

/** Compact JSON, as sync sends a Manifest's template. */
export function manifestBytes(m: Manifest): Buffer {
  return Buffer.from(JSON.stringify(m));
}
