#!/usr/bin/env python3
"""Make kubeconform's JSON schemas from the Kubernetes OpenAPI v2 spec.

    k8s-schemas.py SWAGGER_JSON OUT_DIR MANIFEST...

For every (apiVersion, kind) in the manifests (YAML, several documents per
file), writes OUT_DIR/<kind>-<group>-<version>.json (core: <kind>-<version>
.json), the names kubeconform's -schema-location template
'{{ .ResourceKind }}{{ .KindSuffix }}.json' asks for.  Each schema is
standalone (every $ref expanded) and strict, as the "-standalone-strict"
schemas kubeconform normally downloads: objects with properties get
additionalProperties: false (what kubectl's validation does), int-or-string
becomes a oneOf, and apiVersion and kind must be exactly the kind's.

A kind the spec does not define is an error: a typo in apiVersion or kind
must fail, not be skipped.
"""
import json
import os
import sys

import yaml


def kind_suffix(api_version):
    # kubeconform: "-" + first dot component of the group, then "-" + version
    parts = api_version.split("/")
    suffix = "-" + parts[0].split(".")[0].lower()
    if len(parts) > 1:
        suffix += "-" + parts[1].lower()
    return suffix


def gvk_index(defs):
    idx = {}
    for name, d in defs.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            group, version, kind = gvk.get("group", ""), gvk["version"], gvk["kind"]
            api_version = version if group == "" else group + "/" + version
            idx[(api_version, kind)] = name
    return idx


def expand(node, defs, stack):
    if isinstance(node, list):
        return [expand(x, defs, stack) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].split("/")[-1]
        if name.endswith("api.resource.Quantity"):  # "64Mi" or 2
            return {"oneOf": [{"type": "string"}, {"type": "number"}]}
        if name in stack:  # recursive types (JSONSchemaProps): accept anything
            return {}
        return expand(defs[name], defs, stack + [name])
    out = {}
    for k, v in node.items():
        if k == "format" and v == "int-or-string":
            continue
        out[k] = expand(v, defs, stack)
    if node.get("format") == "int-or-string":
        out = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    # the spec's "type: object" with x-kubernetes-preserve-unknown-fields
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("additionalProperties", None)
    return out


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    defs = spec["definitions"]
    idx = gvk_index(defs)
    out_dir = sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    wanted = set()
    for path in sys.argv[3:]:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    wanted.add((doc.get("apiVersion", ""), doc.get("kind", "")))
    missing = sorted(w for w in wanted if w not in idx)
    if missing:
        sys.exit("no Kubernetes schema for: " + ", ".join("%s %s" % m for m in missing))
    for api_version, kind in sorted(wanted):
        name = idx[(api_version, kind)]
        schema = expand(defs[name], defs, [name])
        schema["$schema"] = "http://json-schema.org/schema#"
        props = schema.setdefault("properties", {})
        props["apiVersion"] = {"type": "string", "enum": [api_version]}
        props["kind"] = {"type": "string", "enum": [kind]}
        fname = "%s%s.json" % (kind.lower(), kind_suffix(api_version))
        with open(os.path.join(out_dir, fname), "w") as f:
            json.dump(schema, f)
        print("%s %s -> %s (%s)" % (api_version, kind, fname, name))


if __name__ == "__main__":
    main()
