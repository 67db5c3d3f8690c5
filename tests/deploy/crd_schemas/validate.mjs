// Validates Kubernetes objects of custom kinds against the schemas of their published CRDs, as
// compiled into the @kubernetes-models packages pinned in package.json (package-lock.json holds
// each tarball's sha512). Reads a JSON array of objects on stdin; writes a JSON array with one
// entry per object: {kind, name, errors}, errors null when the object is valid.

const MODELS = {
  "monitoring.coreos.com/v1/ServiceMonitor": ["@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor", "ServiceMonitor"],
  "monitoring.coreos.com/v1/PrometheusRule": ["@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule", "PrometheusRule"],
  "keda.sh/v1alpha1/ScaledObject": ["@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject", "ScaledObject"],
  "keda.sh/v1alpha1/TriggerAuthentication": ["@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication", "TriggerAuthentication"],
  "cert-manager.io/v1/Certificate": ["@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate", "Certificate"],
  "cert-manager.io/v1/Issuer": ["@kubernetes-models/cert-manager/cert-manager.io/v1/Issuer", "Issuer"],
};

async function check(obj) {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const found = MODELS[key];
  if (found === undefined) {
    return [`no published schema here for ${key}: add its package to package.json and MODELS`];
  }
  const [module, name] = found;
  const Model = (await import(module))[name];
  try {
    new Model(obj).validate();
    return null;
  } catch (error) {
    return (error.errors ?? [error]).map((e) => (e.instancePath !== undefined ? `${e.instancePath || "/"} ${e.message}` : String(e.message ?? e)));
  }
}

let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = [];
for (const obj of JSON.parse(input)) {
  results.push({ kind: obj.kind, name: obj.metadata?.name ?? null, errors: await check(obj) });
}
process.stdout.write(JSON.stringify(results));
