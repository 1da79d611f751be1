"""What the image, pack, push and deploy steps hand each other through a runtime: typed,
frozen values with one JSON form each (the state file's `outputs`).

The JSON forms are those recorded before these types existed, so every recorded state
still loads; `from_json` is their one reader and `to_json` their one writer. Runtime-
specific facts (a pid, a container id, a pod name) travel in `extra`, flattened into the
JSON next to the common fields, so a new runtime needs no new contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _without_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


@dataclass(frozen=True)
class ImageResult:
    """A processor's base image (the image step): its tag and the id it was built as."""

    image: str
    image_id: str
    python: str | None = None  # the image's Python, when this apply built it

    def to_json(self) -> dict[str, Any]:
        return _without_none(
            {"image": self.image, "image_id": self.image_id, "python": self.python}
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageResult:
        return cls(data["image"], data["image_id"], data.get("python"))


@dataclass(frozen=True)
class PackRequest:
    """What a pack assembles: the pack step's inputs (with `base_image`, the image step's
    tag, for an ImageRuntime), the traced model directories by model name, and the step's
    fingerprint, which names the bundle or image."""

    inputs: dict[str, Any]
    artifacts: dict[str, str]
    fingerprint: str


@dataclass(frozen=True)
class PackResult:
    """What a server's replicas run: a bundle directory (local) or a built image."""

    bundle: str | None = None
    image: str | None = None  # the image's tag, where the runtime builds one
    image_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _without_none(
            {"bundle": self.bundle, "image": self.image, "image_id": self.image_id}
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PackResult:
        return cls(data.get("bundle"), data.get("image"), data.get("image_id"))


@dataclass(frozen=True)
class PushResult:
    """A server image in the registry: what replicas pull, pinned by its digest."""

    reference: str
    digest: str
    image_id: str

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "digest": self.digest, "image_id": self.image_id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PushResult:
        return cls(data["reference"], data["digest"], data["image_id"])


@dataclass(frozen=True)
class DeployInput:
    """What a deploy runs: the server's pack and, when the spec names a registry, its push."""

    pack: PackResult
    push: PushResult | None = None

    @property
    def image(self) -> str | None:
        """The image replicas run: the pushed reference if pushed, else the local tag."""
        return self.push.reference if self.push else self.pack.image


@dataclass(frozen=True)
class ReplicaRecord:
    """One replica as deploy left it: its index, URL and the key of what it runs.

    `url` is where this machine (and the bench) reaches it; `internal_url`, where the
    runtime's other replicas (a fleet's router, load-client containers) reach it when that
    differs (a container's name on its network). `peer_url` is the one to give a peer."""

    index: int
    url: str
    key: str | None = None  # changes when what the replica runs changes
    extra: Mapping[str, Any] = field(default_factory=dict)  # pid, port; container, id...
    internal_url: str | None = None  # None: peers reach it at `url`

    @property
    def peer_url(self) -> str:
        return self.internal_url or self.url

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            **self.extra,
            **_without_none({"internal_url": self.internal_url}),
            "url": self.url,
            "key": self.key,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplicaRecord:
        common = ("index", "url", "key", "internal_url")
        extra = {k: v for k, v in data.items() if k not in common}
        return cls(
            int(data["index"]), data["url"], data.get("key"), extra, data.get("internal_url")
        )


@dataclass(frozen=True)
class ServedModel:
    name: str
    task: str
    instances: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "instances": self.instances}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServedModel:
        return cls(data["name"], data["task"], int(data["instances"]))


@dataclass(frozen=True)
class DeployResult:
    """A server's running replicas and the models each serves (what scenarios target)."""

    replicas: tuple[ReplicaRecord, ...]
    models: tuple[ServedModel, ...]
    threads: int | None = None  # as resolved at apply (None: recorded before it was)
    extra: Mapping[str, Any] = field(default_factory=dict)  # bundle; image, network...

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            **_without_none({"threads": self.threads}),
            "replicas": [r.to_json() for r in self.replicas],
            "models": [m.to_json() for m in self.models],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeployResult:
        common = ("replicas", "models", "threads")
        return cls(
            tuple(ReplicaRecord.from_json(r) for r in data.get("replicas", [])),
            tuple(ServedModel.from_json(m) for m in data.get("models", [])),
            data.get("threads"),
            {k: v for k, v in data.items() if k not in common},
        )


def served_models(inputs: Mapping[str, Any]) -> tuple[ServedModel, ...]:
    """The models a deploy step's inputs pack, as its result records them."""
    return tuple(ServedModel(m["name"], m["task"], m["instances"]) for m in inputs["models"])
