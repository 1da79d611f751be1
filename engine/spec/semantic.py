"""Checks the schema cannot express: references, uniqueness, where to trace and serve, ports."""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.devices import LOCAL_DEVICES, has_local_device
from engine.runtimes import RUNTIMES, runtime_class, unknown_runtime
from engine.runtimes.base import RegistryUse, Runtime
from engine.spec.defaults import schema_default
from engine.spec.errors import Diagnostic, format_path
from engine.spec.validate import Marks, mark_of

if TYPE_CHECKING:
    from engine.packing.catalog import NodeType


def semantic_errors(doc: dict[str, Any], marks: Marks) -> list[Diagnostic]:
    errors: list[Diagnostic] = []
    for section in ("models", "hosts", "servers", "scenarios", "catalog"):
        errors += _unique_names(doc, marks, section)
    kind = doc["runtime"]["kind"]  # the schema's defaults are filled in (defaults.py)
    runtime = runtime_class(kind) if kind in RUNTIMES else None
    errors += _runtime_errors(doc, marks, kind, runtime)
    spec = _Checked(
        doc,
        marks,
        {m["name"]: m for m in doc["models"]},
        {h["processor"] for h in doc["hosts"]},
        kind,
        runtime,
    )
    for i in range(len(doc["servers"])):
        errors += _server_errors(spec, i)
    errors += _port_clashes(doc, marks)
    errors += _catalog_errors(doc, marks)
    errors += _scenario_errors(doc, marks)
    return errors


@dataclass(frozen=True)
class _Checked:
    """The document and what the checks of each server look up in it."""

    doc: dict[str, Any]
    marks: Marks
    models: dict[str, dict[str, Any]]  # by name
    host_processors: set[str]  # the processors some host can trace for
    kind: str  # runtime.kind
    runtime: type[Runtime] | None  # None: a kind this version does not know

    @property
    def serves_here(self) -> bool:
        return self.runtime is not None and self.runtime.serves_here


def _runtime_errors(
    doc: dict[str, Any], marks: Marks, kind: str, runtime: type[Runtime] | None
) -> list[Diagnostic]:
    """The runtime exists (validate and plan agree on what this version can do), and the
    spec gives it what it needs."""
    if runtime is None:
        return [Diagnostic(mark_of(marks, ("runtime", "kind")), unknown_runtime(kind))]
    return _registry_errors(doc, marks, kind, runtime.registry_use) + [
        Diagnostic(mark_of(marks, path), f"{format_path(path)}: {message}")
        for path, message in runtime.spec_errors(doc)
    ]


def _server_errors(spec: _Checked, i: int) -> list[Diagnostic]:
    server = spec.doc["servers"][i]
    errors = _packed_model_errors(spec, i)
    if server.get("packing") == "auto":
        return errors + _fleet_errors(spec, i)
    errors += _manual_errors(server, spec.marks, i)
    errors += _processor_errors(spec, i)
    return errors + _resource_errors(server, spec.marks, i)


def _packed_model_errors(spec: _Checked, i: int) -> list[Diagnostic]:
    """Each model a server packs exists, is packed once, and runs on its processor."""
    server = spec.doc["servers"][i]
    errors = []
    seen: set[str] = set()
    for j, packed in enumerate(server["models"]):
        name = packed["model"]
        problem = None
        if name not in spec.models:
            problem = f"unknown model '{name}'{_unknown_model_hint(name, spec.models)}"
        elif name in seen:
            problem = f"'{name}' is packed twice; raise its instances instead"
        elif server.get("processor", "cpu") != "cpu" and _precision(spec.models[name]) == "int8":
            problem = (
                f"'{name}' is traced at precision int8 (dynamic quantization), which only cpu "
                f"servers run; use bf16 or fp16 on {server['processor']}"
            )
        seen.add(name)
        if problem is not None:  # the mark is looked up on error only
            path = ("servers", i, "models", j, "model")
            errors.append(
                Diagnostic(mark_of(spec.marks, path), f"servers[{i}].models[{j}].model: {problem}")
            )
    return errors


def _unknown_model_hint(name: str, models: dict[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(models), n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f"; models: {', '.join(models)}" if models else "; the spec has no models"


def _processor_errors(spec: _Checked, i: int) -> list[Diagnostic]:
    """A manual server's processor: the runtime can serve on it, and something can trace
    for it (a host, or this machine)."""
    processor = spec.doc["servers"][i]["processor"]
    where = mark_of(spec.marks, ("servers", i, "processor"))
    if spec.serves_here and not has_local_device(processor):
        # A host can trace for this processor, but this runtime serves here.
        others = " or ".join(k for k in RUNTIMES if k != spec.kind)
        return [
            Diagnostic(
                where,
                f"servers[{i}].processor: the {spec.kind} runtime serves on this machine, "
                f"which has no {processor} device ({LOCAL_DEVICES[processor]}); use processor: "
                f"cpu, or a runtime on {processor} nodes (runtime.kind: {others})",
            )
        ]
    if processor not in spec.host_processors and not has_local_device(processor):
        return [
            Diagnostic(
                where,
                f"servers[{i}].processor: {processor} models must be traced on a {processor} "
                f"device, and there is no host with processor: {processor} under hosts and no "
                f"{processor} device here; add a host with processor: {processor}",
            )
        ]
    return []


def _scenario_errors(doc: dict[str, Any], marks: Marks) -> list[Diagnostic]:
    errors = []
    for i, scenario in enumerate(doc["scenarios"]):
        if scenario["kind"] == "benchmark" and ("concurrency" in scenario) == ("rate" in scenario):
            errors.append(
                Diagnostic(
                    mark_of(marks, ("scenarios", i), key=True),
                    f"scenarios[{i}]: a benchmark needs exactly one of "
                    f"concurrency (closed loop) or rate (open loop)",
                )
            )
        if "texts" in scenario and ("seq_0" in scenario or "seq_1" in scenario):
            errors.append(
                Diagnostic(
                    mark_of(marks, ("scenarios", i, "texts"), key=True),
                    f"scenarios[{i}].texts: give either texts or seq_0/seq_1, not both",
                )
            )
        if "weights" in scenario:
            errors += _weight_errors(doc, marks, i)
    return errors


AUTO_ONLY = ("max_utilization", "node_types")


def _schema_default_or_none(*path: str) -> Any:
    """A key's schema default (filled into the document), or None where it has none."""
    try:
        return schema_default(*path)
    except KeyError:
        return None


def _manual_errors(server: dict[str, Any], marks: Marks, i: int) -> list[Diagnostic]:
    """Keys that only a packing: auto server reads."""
    errors = [
        Diagnostic(
            mark_of(marks, ("servers", i, key), key=True),
            f"servers[{i}].{key}: applies to packing: auto servers only",
        )
        for key in AUTO_ONLY
        if key in server and server[key] != _schema_default_or_none("server", key)
    ]
    errors += [
        Diagnostic(
            mark_of(marks, ("servers", i, "models", j, "rate"), key=True),
            f"servers[{i}].models[{j}].rate: a demand applies to packing: auto servers only; "
            f"a manual server holds `instances` copies in each of its replicas",
        )
        for j, packed in enumerate(server["models"])
        if "rate" in packed
    ]
    return errors


def _catalog_errors(doc: dict[str, Any], marks: Marks) -> list[Diagnostic]:
    """A node type that is not built in must say everything about itself."""
    from engine.packing.catalog import catalog

    builtin = catalog()
    fields = ("processor", "devices", "cores_per_device", "memory_per_device_gib", "price_per_hour")
    errors = []
    for i, entry in enumerate(doc.get("catalog", [])):
        missing = [f for f in fields if f not in entry]
        if entry["name"] not in builtin and missing:
            errors.append(
                Diagnostic(
                    mark_of(marks, ("catalog", i, "name")),
                    f"catalog[{i}]: '{entry['name']}' is not a built-in node type, so it needs "
                    f"{', '.join(fields)} (missing: {', '.join(missing)})",
                )
            )
    return errors


def _fleet_errors(spec: _Checked, i: int) -> list[Diagnostic]:
    """A packing: auto server: its node types exist and are reachable, and every model
    has a profile for one of their processors (declared, or to be measured by a profile
    step on this machine) and fits one of their devices (known before profiling only when
    nothing is to be measured)."""
    from engine.spec.build import spec_catalog
    from engine.spec.fleet import allowed_types, reachable_processors

    server = spec.doc["servers"][i]
    errors = []
    if server["replicas"] != schema_default("server", "replicas"):  # the default is filled in
        errors.append(
            Diagnostic(
                mark_of(spec.marks, ("servers", i, "replicas"), key=True),
                f"servers[{i}].replicas: a packing: auto server runs one server per device "
                f"the packing chooses; drop replicas",
            )
        )
    if _catalog_errors(spec.doc, spec.marks):
        return errors  # reported once, by the caller
    catalog = spec_catalog(spec.doc.get("catalog", []))
    errors += _node_type_errors(spec, i, catalog)
    if errors:
        return errors  # the models' checks would only repeat the same problem
    reachable = reachable_processors(spec.serves_here, spec.host_processors)
    types = allowed_types(catalog, server.get("node_types", []), server.get("processor"), reachable)
    if not types:
        where = (
            f"this machine (runtime {spec.kind})" if spec.serves_here else "a host or this machine"
        )
        return [
            Diagnostic(
                mark_of(spec.marks, ("servers", i, "name")),
                f"servers[{i}]: no node type to pack onto: none of the catalog's types it "
                f"allows has a processor that {where} can trace and serve for "
                f"({', '.join(sorted(reachable))}); add a host, or allow other node types",
            )
        ]
    return _fleet_model_errors(spec, i, types)


def _node_type_errors(spec: _Checked, i: int, catalog: dict[str, NodeType]) -> list[Diagnostic]:
    """Each of a server's node_types patterns names some type of the catalog."""
    from engine.spec.fleet import unmatched

    errors = []
    for j, pattern in enumerate(spec.doc["servers"][i].get("node_types", [])):
        if pattern in unmatched([pattern], catalog):
            close = difflib.get_close_matches(pattern, list(catalog), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            errors.append(
                Diagnostic(
                    mark_of(spec.marks, ("servers", i, "node_types", j)),
                    f"servers[{i}].node_types[{j}]: '{pattern}' names no node type of the "
                    f"catalog{hint}",
                )
            )
    return errors


def _fleet_model_errors(spec: _Checked, i: int, types: Sequence[NodeType]) -> list[Diagnostic]:
    """Every model of a packing: auto server has a profile for a processor of `types`,
    and fits one of their devices."""
    from engine.packing.fleet import Profile
    from engine.packing.solver import device_classes, fits, unplaceable
    from engine.spec.fleet import demand, measurable

    server = spec.doc["servers"][i]
    offered = sorted({t.processor for t in types})
    measured_here = measurable(offered)
    classes = device_classes(types)
    u = server.get("max_utilization", 0.75)
    errors = []
    for j, packed in enumerate(server["models"]):
        model = spec.models.get(packed["model"])
        if model is None:
            continue  # reported by _packed_model_errors
        path = ("servers", i, "models", j, "model")  # its mark is looked up on error only
        profiles = {p: Profile(**v) for p, v in model.get("profiles", {}).items()}
        if set(measured_here) - set(profiles):
            continue  # a profile step measures it here: whether it fits is known then
        if not set(profiles) & set(offered):
            has = (
                f"has a rate but no profile for {' or '.join(offered)}"
                if packed.get("rate")
                else f"has no profile for {' or '.join(offered)}"
            )
            errors.append(
                Diagnostic(
                    mark_of(spec.marks, path),
                    f"servers[{i}].models[{j}]: model '{packed['model']}' {has}, the "
                    f"processor(s) this server can reach; give it profiles.{offered[0]} "
                    f"(memory_mib, rate_per_core) under models",
                )
            )
            continue
        d = demand(
            packed["model"],
            profiles,
            packed.get("rate"),
            packed.get("instances", 1),
            "instances" in packed,
        )
        if not any(fits(d, c, u) for c in classes):
            errors.append(
                Diagnostic(
                    mark_of(spec.marks, path),
                    f"servers[{i}].models[{j}]: {unplaceable(d, classes, u)}",
                )
            )
    return errors


def _precision(model: dict[str, Any]) -> str:
    return str(model["trace"]["precision"])  # the schema's default is filled in


def _registry_errors(
    doc: dict[str, Any], marks: Marks, kind: str, use: RegistryUse
) -> list[Diagnostic]:
    """runtime.registry must be given where replicas pull from it, and not where unused."""
    given = "registry" in doc["runtime"]
    if use == "required" and not given:
        where = mark_of(marks, ("runtime", "kind"))
        return [
            Diagnostic(
                where,
                f"runtime.registry: the {kind} runtime runs images from a registry; "
                f"name one (e.g. 123456789012.dkr.ecr.us-west-2.amazonaws.com/team/)",
            )
        ]
    if use == "none" and given:
        where = mark_of(marks, ("runtime", "registry"), key=True)
        return [
            Diagnostic(
                where,
                f"runtime.registry: the {kind} runtime runs no images; remove the registry "
                f"or use a runtime that pushes images",
            )
        ]
    return []


def _weight_errors(doc: dict[str, Any], marks: Marks, i: int) -> list[Diagnostic]:
    """A weight map must select the targets the spec deploys (the load generator's rule)."""
    from engine.weights import target_key, weigh

    scenario = doc["scenarios"][i]
    where = mark_of(marks, ("scenarios", i, "weights"))
    if scenario["kind"] == "sequential":
        return [
            Diagnostic(
                where,
                f"scenarios[{i}].weights: a sequential scenario sends one request to every "
                f"target; weights apply to random and benchmark scenarios",
            )
        ]
    keys = [
        target_key(server["name"], replica, f"{packed['model']}-{n}")
        for server in doc["servers"]
        for replica in range(server["replicas"])
        for packed in server["models"]
        for n in range(packed["instances"])
    ]
    try:
        weigh(keys, scenario["weights"])
    except ValueError as exc:
        return [Diagnostic(where, f"scenarios[{i}].weights: {exc}")]
    return []


def _resource_errors(server: dict[str, Any], marks: Marks, i: int) -> list[Diagnostic]:
    """Accelerators a server asks for must be those of its processor."""
    resources = server.get("resources", {})
    processor = server["processor"]
    wanted = {"gpus": "gpu", "neuron_devices": "inf", "neuron_cores": "inf"}
    errors = [
        Diagnostic(
            mark_of(marks, ("servers", i, "resources", key), key=True),
            f"servers[{i}].resources.{key}: only {needs} servers use {key}; "
            f"this server's processor is {processor}",
        )
        for key, needs in wanted.items()
        if key in resources and processor != needs
    ]
    if "neuron_devices" in resources and "neuron_cores" in resources:
        errors.append(
            Diagnostic(
                mark_of(marks, ("servers", i, "resources", "neuron_cores"), key=True),
                f"servers[{i}].resources: give neuron_devices (whole devices) or neuron_cores, "
                f"not both",
            )
        )
    return errors


def _unique_names(doc: dict[str, Any], marks: Marks, section: str) -> list[Diagnostic]:
    errors = []
    first: dict[str, int] = {}
    for i, item in enumerate(doc[section]):
        name = item["name"]
        if name in first:
            earlier = mark_of(marks, (section, first[name], "name"))
            errors.append(
                Diagnostic(
                    mark_of(marks, (section, i, "name")),
                    f"{section}[{i}].name: duplicate name '{name}' (first at "
                    f"line {earlier.line} of {earlier.file})",
                )
            )
        else:
            first[name] = i
    return errors


def _port_clashes(doc: dict[str, Any], marks: Marks) -> list[Diagnostic]:
    errors = []
    taken: list[tuple[int, int, str]] = []  # [start, end) and server name
    for i, server in enumerate(doc["servers"]):
        if "port" not in server:
            continue
        start = server["port"]
        end = start + server["replicas"]
        where = mark_of(marks, ("servers", i, "port"))
        if end - 1 > 65535:
            errors.append(
                Diagnostic(
                    where,
                    f"servers[{i}].port: {start} + {end - start} replicas runs past port 65535",
                )
            )
        for other_start, other_end, other in taken:
            if start < other_end and other_start < end:
                errors.append(
                    Diagnostic(
                        where,
                        f"servers[{i}].port: ports {start}-{end - 1} "
                        f"clash with server '{other}' "
                        f"({other_start}-{other_end - 1})",
                    )
                )
        taken.append((start, end, server["name"]))
    return errors


def semantic_warnings(doc: dict[str, Any], marks: Marks) -> list[Diagnostic]:
    """What is valid but worth knowing: servers reachable from the network."""
    address = doc.get("runtime", {}).get("bind_address")
    if address is None or _loopback(address):
        return []
    where = (
        "every network interface of this machine"
        if address in ("0.0.0.0", "::")
        else f"the network at {address}"
    )
    return [
        Diagnostic(
            mark_of(marks, ("runtime", "bind_address")),
            f"runtime.bind_address: {address} makes the servers reachable from {where}; "
            f"they have no authentication: anyone who can reach them can use them "
            f"(127.0.0.1 keeps them to this machine)",
            "warning",
        )
    ]


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to, say so
