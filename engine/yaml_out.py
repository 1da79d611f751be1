"""API objects as YAML, the way kubectl and GitOps tools (Argo CD, Flux) read them."""

from __future__ import annotations

from typing import Any

import yaml


class _PlainDumper(yaml.SafeDumper):
    """Writes repeated values (labels) out in full: no YAML anchors in manifests."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """One YAML stream, a `---` before each object."""
    return yaml.dump_all(objects, Dumper=_PlainDumper, sort_keys=False, explicit_start=True)


def file_name(obj: dict[str, Any]) -> str:
    """One object's file in a directory of manifests: KIND-NAME.yaml, namespaces first."""
    kind = obj["kind"].lower()
    prefix = "00-" if kind == "namespace" else ""
    return f"{prefix}{kind}-{obj['metadata']['name']}.yaml"
