"""Checks the schema cannot express: references, uniqueness, where to trace and serve, ports."""

from __future__ import annotations

import difflib
from typing import Any

from engine.devices import LOCAL_DEVICES, has_local_device
from engine.runtimes import RUNTIMES, runtime_class, unknown_runtime
from engine.runtimes.base import RegistryUse
from engine.spec.errors import Diagnostic
from engine.spec.validate import Marks, mark_of


def semantic_errors(doc: dict[str, Any], marks: Marks) -> list[Diagnostic]:
    errors: list[Diagnostic] = []
    for section in ("models", "hosts", "servers", "scenarios"):
        errors += _unique_names(doc, marks, section)
    models = {m["name"]: m for m in doc.get("models", [])}
    host_processors = {h["processor"] for h in doc.get("hosts", [])}
    kind = doc.get("runtime", {}).get("kind", "local")
    runtime = runtime_class(kind) if kind in RUNTIMES else None
    if runtime is None:  # validate and plan agree on what this version can do
        errors.append(Diagnostic(mark_of(marks, ("runtime", "kind")), unknown_runtime(kind)))
    else:
        errors += _registry_errors(doc, marks, kind, runtime.registry_use)
    others = " or ".join(k for k in RUNTIMES if k != kind)
    for i, server in enumerate(doc.get("servers", [])):
        seen: set[str] = set()
        for j, packed in enumerate(server["models"]):
            name = packed["model"]
            path = ("servers", i, "models", j, "model")
            if name not in models:
                close = difflib.get_close_matches(name, list(models), n=1)
                hint = (
                    f" (did you mean '{close[0]}'?)"
                    if close
                    else (
                        f"; models: {', '.join(models)}" if models else "; the spec has no models"
                    )
                )
                errors.append(
                    Diagnostic(
                        mark_of(marks, path),
                        f"servers[{i}].models[{j}].model: unknown model '{name}'{hint}",
                    )
                )
            elif name in seen:
                errors.append(
                    Diagnostic(
                        mark_of(marks, path),
                        f"servers[{i}].models[{j}].model: '{name}' is packed "
                        f"twice; raise its instances instead",
                    )
                )
            elif server["processor"] != "cpu" and _precision(models[name]) == "int8":
                errors.append(
                    Diagnostic(
                        mark_of(marks, path),
                        f"servers[{i}].models[{j}].model: '{name}' is traced at precision "
                        f"int8 (dynamic quantization), which only cpu servers run; use bf16 or "
                        f"fp16 on {server['processor']}",
                    )
                )
            seen.add(name)
        processor = server["processor"]
        where = mark_of(marks, ("servers", i, "processor"))
        if runtime is not None and runtime.serves_here and not has_local_device(processor):
            # A host can trace for this processor, but this runtime serves here.
            errors.append(
                Diagnostic(
                    where,
                    f"servers[{i}].processor: the {kind} runtime serves on this machine, which "
                    f"has no {processor} device ({LOCAL_DEVICES[processor]}); use processor: cpu, "
                    f"or a runtime on {processor} nodes (runtime.kind: {others})",
                )
            )
        elif processor not in host_processors and not has_local_device(processor):
            errors.append(
                Diagnostic(
                    where,
                    f"servers[{i}].processor: {processor} models must be traced on a {processor} "
                    f"device, and there is no host with processor: {processor} under hosts and no "
                    f"{processor} device here; add a host with processor: {processor}",
                )
            )
    errors += _port_clashes(doc, marks)
    for i, scenario in enumerate(doc.get("scenarios", [])):
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


def _precision(model: dict[str, Any]) -> str:
    return str(model.get("trace", {}).get("precision", "fp32"))


def _registry_errors(
    doc: dict[str, Any], marks: Marks, kind: str, use: RegistryUse
) -> list[Diagnostic]:
    """runtime.registry must be given where replicas pull from it, and not where unused."""
    given = "registry" in doc.get("runtime", {})
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
    from engine.bench.targets import target_key, weigh

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
        for server in doc.get("servers", [])
        for replica in range(server.get("replicas", 1))
        for packed in server["models"]
        for n in range(packed.get("instances", 1))
    ]
    try:
        weigh(keys, scenario["weights"])
    except ValueError as exc:
        return [Diagnostic(where, f"scenarios[{i}].weights: {exc}")]
    return []


def _unique_names(doc: dict[str, Any], marks: Marks, section: str) -> list[Diagnostic]:
    errors = []
    first: dict[str, int] = {}
    for i, item in enumerate(doc.get(section, [])):
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
    for i, server in enumerate(doc.get("servers", [])):
        if "port" not in server:
            continue
        start = server["port"]
        end = start + server.get("replicas", 1)
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
