"""Fleet specs: catalog, profiles, packing: auto servers, and their semantic errors."""

from __future__ import annotations

from engine.packing.fleet import Profile
from engine.spec.fleet import offered_processors, unprofiled

from .conftest import errors_of, valid

FLEET = """\
apiVersion: doinfer/v1
name: fleet
catalog:
  - {name: inf2.xlarge, price_per_hour: 0.70}
  - {name: big-cpu, processor: cpu, devices: 1, cores_per_device: 64, memory_per_device_gib: 120, price_per_hour: 2.0}
models:
  - name: a
    source: hf:acme/a
    task: feature-extraction
    profiles:
      inf: {memory_mib: 520, rate_per_core: 110}
      cpu: {memory_mib: 600, rate_per_core: 14}
  - name: b
    source: hf:acme/b
    task: feature-extraction
    profiles:
      cpu: {memory_mib: 300, rate_per_core: 20}
hosts:
  - {name: neuron, address: 10.0.0.7, processor: inf}
servers:
  - name: fleet
    packing: auto
    max_utilization: 0.6
    node_types: [inf2.*, big-cpu]
    models:
      - {model: a, rate: 3.5}
      - {model: b, instances: 2}
runtime: {kind: docker, registry: 123456789012.dkr.ecr.us-east-1.amazonaws.com/}
"""  # noqa: E501


def test_a_fleet_spec_builds_typed_objects(write) -> None:
    spec = valid(write("s.yaml", FLEET))
    server = spec.servers[0]
    assert (server.packing, server.max_utilization, server.processor) == ("auto", 0.6, None)
    assert server.node_types == ("inf2.*", "big-cpu")
    a, b = server.models
    assert (a.rate, a.pinned, b.rate, b.instances, b.pinned) == (3.5, False, None, 2, True)
    assert spec.model("a").profiles["inf"] == Profile(520, 110)
    assert spec.catalog["inf2.xlarge"].price_per_hour == 0.70  # overridden
    assert spec.catalog["inf2.xlarge"].memory_per_device_gib == 32  # kept from the built-in
    assert spec.catalog["big-cpu"].cores_per_device == 64
    assert spec.catalog["c6i.large"].price_per_hour == 0.085  # built-in, untouched


def test_a_model_with_a_rate_but_no_reachable_profile_points_at_it(write) -> None:
    text = FLEET.replace(
        "      cpu: {memory_mib: 300, rate_per_core: 20}\n",
        "      gpu: {memory_mib: 300, rate_per_core: 20}\n",
    )
    text = text.replace("{model: b, instances: 2}", "{model: b, rate: 1}")
    text = text.replace("[inf2.*, big-cpu]", "[inf2.*]")  # no cpu: nothing to measure here
    path = write("s.yaml", text)
    assert errors_of(path) == [
        f"{path}:27:17: error: servers[0].models[1]: model 'b' has a rate but no profile "
        f"for inf, the processor(s) this server can reach; give it profiles.inf "
        f"(memory_mib, rate_per_core) under models"
    ]


def test_a_profile_this_machine_can_measure_need_not_be_declared(write) -> None:
    text = FLEET.replace(
        "      cpu: {memory_mib: 300, rate_per_core: 20}\n",
        "      gpu: {memory_mib: 300, rate_per_core: 20}\n",
    )
    spec = valid(write("s.yaml", text.replace("{model: b, instances: 2}", "{model: b, rate: 1}")))
    assert unprofiled(spec, spec.servers[0]) == [("b", "cpu")]  # a profile step measures it


def test_without_a_host_inf_is_out_of_reach(write) -> None:
    text = FLEET.replace("hosts:\n  - {name: neuron, address: 10.0.0.7, processor: inf}\n", "")
    assert valid(write("s.yaml", text)).hosts == ()  # a and b both have cpu profiles
    spec = valid(
        write("t.yaml", text.replace("      cpu: {memory_mib: 600, rate_per_core: 14}\n", ""))
    )
    assert offered_processors(spec, spec.servers[0]) == ["cpu"]
    assert unprofiled(spec, spec.servers[0]) == [("a", "cpu")]  # its inf profile is no use


def test_unknown_node_type_pattern(write) -> None:
    path = write("s.yaml", FLEET.replace("[inf2.*, big-cpu]", "[inf2.*, big-cpus]"))
    assert errors_of(path) == [
        f"{path}:24:26: error: servers[0].node_types[1]: 'big-cpus' names no node type of "
        f"the catalog (did you mean 'big-cpu'?)"
    ]


def test_a_new_node_type_must_say_everything(write) -> None:
    path = write("s.yaml", FLEET.replace("processor: cpu, devices: 1, ", ""))
    assert errors_of(path) == [
        f"{path}:5:12: error: catalog[1]: 'big-cpu' is not a built-in node type, so it needs "
        f"processor, devices, cores_per_device, memory_per_device_gib, price_per_hour "
        f"(missing: processor, devices)"
    ]


def test_a_copy_bigger_than_every_device(write) -> None:
    path = write("s.yaml", FLEET.replace("cpu: {memory_mib: 300,", "cpu: {memory_mib: 300000,"))
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:27:17: error: servers[0].models[1]: model b: one copy needs")


def test_keys_of_the_other_kind_of_server(write) -> None:
    auto = FLEET.replace(
        "    max_utilization: 0.6\n", "    max_utilization: 0.6\n    replicas: 2\n"
    )
    path = write("s.yaml", auto)
    assert errors_of(path) == [
        f"{path}:24:5: error: servers[0].replicas: a packing: auto server runs one server "
        f"per device the packing chooses; drop replicas"
    ]
    manual = FLEET.replace("    packing: auto\n", "    processor: cpu\n")
    path = write("t.yaml", manual)
    assert errors_of(path) == [
        f"{path}:23:5: error: servers[0].max_utilization: applies to packing: auto servers only",
        f"{path}:24:5: error: servers[0].node_types: applies to packing: auto servers only",
        f"{path}:26:20: error: servers[0].models[0].rate: a demand applies to packing: auto "
        f"servers only; a manual server holds `instances` copies in each of its replicas",
    ]


def test_a_manual_server_still_needs_a_processor(write) -> None:
    path = write("s.yaml", FLEET.replace("    packing: auto\n", "    packing: manual\n"))
    errors = errors_of(path)
    assert errors[0] == f"{path}:21:5: error: servers[0]: missing required key 'processor'"


def test_a_fleet_on_kubernetes_keeps_its_devices_object_names_within_63(write) -> None:
    """A fleet's devices run as servers `<server>-<node>-<device>`: their Kubernetes names
    run 9 characters past the fleet's own, so a name that fits alone can still be refused
    by the cluster at apply. Validation says so first, at the server's name."""
    kube = FLEET.replace(
        "runtime: {kind: docker, registry: 123456789012.dkr.ecr.us-east-1.amazonaws.com/}",
        "runtime: {kind: kubernetes, registry: 123456789012.dkr.ecr.us-east-1.amazonaws.com/}",
    )
    name = "f" * 50  # "fleet-" + 50 = 56 characters: fits; its devices' 65 do not
    path = write("long.yaml", kube.replace("  - name: fleet\n", f"  - name: {name}\n"))
    (error,) = errors_of(path)
    assert "servers[0].name: the servers of this fleet's devices" in error
    assert f"'fleet-{name}-n0000-00'" in error and "65 characters" in error
    valid(write("short.yaml", kube.replace("  - name: fleet\n", f"  - name: {'f' * 40}\n")))
