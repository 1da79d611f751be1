"""extends: maps merge, named lists merge by name, other values replace; errors point home."""

from __future__ import annotations

from pathlib import Path

from engine.spec import load_spec

from .conftest import VALID, errors_of


def test_overlay_merges_maps_and_named_lists(write) -> None:
    write("base.yaml", VALID)
    over = write(
        "envs/prod.yaml",
        """\
        extends: ../base.yaml
        environment: prod
        servers:
          - name: web
            replicas: 4
          - name: api
            processor: cpu
            models: [{model: tiny}]
        runtime: {bind_address: 0.0.0.0}
        """,
    )
    (Path(over).parent / "tiny").mkdir()
    spec = load_spec(over)
    assert spec.environment == "prod"
    assert [s.name for s in spec.servers] == ["web", "api"]
    web = spec.server("web")
    assert (web.replicas, web.models[0].instances, web.processor) == (4, 2, "cpu")
    assert spec.runtime.kind == "local" and spec.runtime.bind_address == "0.0.0.0"
    assert "extends" not in spec.document


def test_plain_lists_are_replaced(write) -> None:
    write("base.yaml", VALID)
    over = write(
        "over.yaml",
        """\
        extends: base.yaml
        servers:
          - name: web
            models: [{model: tiny, instances: 7}]
        """,
    )
    spec = load_spec(over)
    assert spec.server("web").models[0].instances == 7


def test_errors_point_into_the_file_that_holds_the_value(write, tmp_path: Path) -> None:
    write("base.yaml", VALID)
    over = write(
        "envs/prod.yaml",
        """\
        extends: ../base.yaml
        servers:
          - name: web
            replicas: 0
        """,
    )
    assert errors_of(over) == [
        f"{over}:4:15: error: servers[0].replicas: 0 is less than the minimum of 1"
    ]
    bad_base = write("bad/base.yaml", VALID.replace("task: feature-extraction", "task: nope"))
    over2 = write("bad/over.yaml", "extends: base.yaml\n")
    shown = str(Path(over2).parent / "base.yaml")
    assert errors_of(over2)[0].startswith(f"{shown}:6:11: error: models[0].task")
    assert bad_base.exists()


def test_cycle_is_an_error_at_extends(write) -> None:
    a = write("a.yaml", "extends: b.yaml\n" + VALID)
    write("b.yaml", "extends: a.yaml\n")
    (error,) = errors_of(a)
    assert error.startswith(f"{Path(a).parent / 'b.yaml'}:1:10: error: extends: cycle ")
    assert "a.yaml -> b.yaml -> a.yaml" in error


def test_missing_base_is_an_error_at_extends(write) -> None:
    path = write("s.yaml", "extends: [nowhere.yaml]\n" + VALID)
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:1:11: error: extends: base spec nowhere.yaml not found")


def test_several_bases_apply_in_order(write) -> None:
    write("base.yaml", VALID)
    write("big.yaml", "servers:\n  - name: web\n    replicas: 5\n")
    write("small.yaml", "servers:\n  - name: web\n    replicas: 2\n")
    spec = load_spec(write("s.yaml", "extends: [base.yaml, big.yaml, small.yaml]\n"))
    assert spec.server("web").replicas == 2
