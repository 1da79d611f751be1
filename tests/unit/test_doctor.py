"""`doinfer --version` and `doinfer doctor`: what they say, and on which stream."""

from __future__ import annotations

import importlib.metadata
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine import doctor
from engine.runtimes import doctor as runtime_doctor
from tests.unit.test_cli import run

REPO = Path(__file__).resolve().parents[2]


def test_version_names_the_engine_torch_and_transformers_on_stdout() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stderr == ""
    torch, transformers = (importlib.metadata.version(p) for p in ("torch", "transformers"))
    assert result.stdout.strip() == f"doinfer 0.1.0 torch {torch} transformers {transformers}"


def test_versions_do_not_import_torch() -> None:
    code = (
        "import sys; from engine.doctor import versions; versions(); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip() == "False", result.stderr


def test_doctor_reports_every_check_on_stdout(tmp_path: Path) -> None:
    result = run("doctor", env={"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    rows = {line.split()[0] for line in result.stdout.splitlines()[2:]}
    assert rows == {"ssh", "gpu", "inferentia", "cpu", "docker", "kube"}
    assert f"kube context   no     no kubeconfig ({tmp_path / 'none'})" in result.stdout


KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: prod
contexts:
  - name: prod
    context: {cluster: eks-prod, user: admin, namespace: serving}
clusters:
  - name: eks-prod
    cluster: {server: "https://127.0.0.1:%d"}
"""


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    empty, config = tmp_path / "empty.yaml", tmp_path / "config.yaml"
    empty.write_text("apiVersion: v1\nkind: Config\n")
    config.write_text(KUBECONFIG % port)
    monkeypatch.setenv("KUBECONFIG", f"{empty}:{config}")  # merged, as kubectl does
    yield config, port
    listener.close()


def test_kube_context_is_read_without_contacting_the_cluster(kubeconfig) -> None:
    check = runtime_doctor.kube_check(contact=False)
    assert check.ok
    assert check.detail.startswith("context prod, cluster eks-prod at https://127.0.0.1:")
    assert "namespace serving" in check.detail and "not contacted" in check.detail


def test_kube_contact_tries_the_api_server(kubeconfig) -> None:
    assert runtime_doctor.kube_check(contact=True).detail.endswith("accepts connections")
    config, _ = kubeconfig
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        free = closed.getsockname()[1]
    config.write_text(KUBECONFIG % free)
    check = runtime_doctor.kube_check(contact=True)
    assert not check.ok and "unreachable" in check.detail


def test_ssh_agent_must_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "gone.sock"))
    assert not doctor.ssh_agent_check().ok
    with socket.socket(socket.AF_UNIX) as agent:
        agent.bind(str(tmp_path / "agent.sock"))
        agent.listen()
        monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
        assert doctor.ssh_agent_check().ok


def test_help_documents_exit_codes_and_streams() -> None:
    text = run("--help").stdout
    for line in ("0    success", "2    plan --detailed-exitcode", "3    bench: an SLO"):
        assert line in text
    assert "stdout" in text and "stderr" in text
