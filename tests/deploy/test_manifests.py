"""deploy/: Kubernetes manifests against the Kubernetes JSON schemas, compose, unit, Containerfile.

Everything runs offline: ``kubernetes-validate`` ships the schemas of each Kubernetes release,
``systemd-analyze verify`` checks the unit without a running systemd. The configuration files
shipped in deploy/ are also loaded with the daemon's own config parser and rule compiler, so an
example that the daemon would refuse cannot be shipped.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from dialer.config import Config, load_config, parse_config, trunk_password_env_var
from dialer.routing import Router

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
UNIT = DEPLOY / "systemd" / "dialer.service"

#: The oldest Kubernetes release still maintained when this was written, and the newest the
#: installed kubernetes-validate knows; manifests must be valid for both.
K8S_OLDEST = "1.29"

#: Address and name the container substitutes for the ConfigMap's placeholders at start.
POD_IP = "192.0.2.44"
POD_NAME = "dialer-7d9c8-abcde"

DUMMY_SECRET_ENV = {"DIALER_API_TOKENS": "tok-0123456789"}

Manifest = dict[str, Any]


def load_yaml_documents(path: Path) -> list[Manifest]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def k8s_manifests() -> list[tuple[str, Manifest]]:
    """Every Kubernetes object in deploy/k8s (the Kustomization is kustomize's, not the API's)."""
    found: list[tuple[str, Manifest]] = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_yaml_documents(path):
            if doc.get("kind") != "Kustomization":
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


def find(kind: str, name: str | None = None) -> Manifest:
    matches = [
        doc
        for _, doc in k8s_manifests()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def load_example_config(path: Path, env: Mapping[str, str]) -> Config:
    config = load_config(path, env=env)
    Router(config)  # every CEL rule compiles, every pool names known reps/teams
    return config


# --------------------------------------------------------------------------- Kubernetes


def latest_k8s_version() -> str:
    version: str = latest_version()
    return version


def validate_k8s(manifest: Manifest, version: str) -> None:
    kubernetes_validate.validate(manifest, version, strict=True)


MANIFEST_IDS = [label for label, _ in k8s_manifests()]


@pytest.mark.parametrize("version", [K8S_OLDEST, "latest"])
@pytest.mark.parametrize("manifest", [doc for _, doc in k8s_manifests()], ids=MANIFEST_IDS)
def test_k8s_manifest_matches_the_kubernetes_schema(manifest: Manifest, version: str) -> None:
    validate_k8s(manifest, latest_k8s_version() if version == "latest" else version)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["spec"].__setitem__("replicas", "two"), "'two' is not of type 'integer'"),
        (lambda d: d["spec"]["template"]["spec"].__setitem__("hostNetwrok", True), "hostNetwrok"),
    ],
    ids=["wrong-type", "misspelt-field"],
)
def test_schema_validation_catches_a_broken_deployment(mutate: Any, expected: str) -> None:
    broken = copy.deepcopy(find("Deployment", "dialer"))
    mutate(broken)
    with pytest.raises(kubernetes_validate.ValidationError) as caught:
        validate_k8s(broken, K8S_OLDEST)
    assert expected in str(caught.value.message)


def test_kustomization_lists_every_manifest_file() -> None:
    (kustomization,) = load_yaml_documents(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    present = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def pod_template() -> Manifest:
    template: Manifest = find("Deployment", "dialer")["spec"]["template"]
    return template


def dialer_container() -> Manifest:
    (container,) = pod_template()["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def test_deployment_runs_several_daemons_with_probes_on_health_endpoints() -> None:
    deployment = find("Deployment", "dialer")
    assert deployment["spec"]["replicas"] >= 2
    container = dialer_container()
    ports = {port["name"]: port for port in container["ports"]}
    assert ports["http"]["containerPort"] == 8080
    assert (ports["sip-udp"]["containerPort"], ports["sip-udp"]["protocol"]) == (5060, "UDP")
    assert (ports["sip-tcp"]["containerPort"], ports["sip-tcp"]["protocol"]) == (5060, "TCP")
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_selectors_of_services_and_budget_match_the_pods() -> None:
    pod_labels = pod_template()["metadata"]["labels"]
    deployment = find("Deployment", "dialer")
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    budget = find("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"].get("maxUnavailable", 0) < deployment["spec"]["replicas"]
    container_ports = {port["name"] for port in dialer_container()["ports"]}
    for _, service in k8s_manifests():
        if service["kind"] != "Service":
            continue
        assert service["spec"]["selector"].items() <= pod_labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports


def test_pod_is_non_root_and_locked_down() -> None:
    spec = pod_template()["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == containerfile_uid()
    container = dialer_container()
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert {"/etc/dialer", "/tmp"} <= mounts  # the rendered config is written to /tmp


def rendered_configmap_toml() -> str:
    """What the container's start command makes of the ConfigMap's dialer.toml."""
    toml: str = find("ConfigMap", "dialer-config")["data"]["dialer.toml"]
    script = dialer_container()["args"][0]
    assert "@POD_IP@" in toml and "@POD_IP@" in script and "@POD_NAME@" in script
    rendered = toml.replace("@POD_IP@", POD_IP).replace("@POD_NAME@", POD_NAME)
    assert "@POD_" not in rendered
    return rendered


def test_configmap_renders_to_a_config_the_daemon_accepts(tmp_path: Path) -> None:
    path = tmp_path / "dialer.toml"
    path.write_text(rendered_configmap_toml(), encoding="utf-8")
    secret = find("Secret", "dialer-secrets")["stringData"]
    config = load_example_config(path, env=secret)
    assert config.sip.host == POD_IP
    assert config.api.host == POD_IP
    assert config.daemon.instance_id == POD_NAME
    assert config.database.url == secret["DIALER_DATABASE_URL"]
    assert config.api.tokens
    # The pod is given time to drain: preStop pause + drain_timeout_s fit in the grace period.
    grace = pod_template()["spec"]["terminationGracePeriodSeconds"]
    assert config.daemon.drain_timeout_s + 5 < grace


def test_secret_names_only_variables_the_daemon_reads(tmp_path: Path) -> None:
    path = tmp_path / "dialer.toml"
    path.write_text(rendered_configmap_toml(), encoding="utf-8")
    config = load_config(path, env={})
    known = {"DIALER_API_TOKENS", "DIALER_DATABASE_URL"} | {
        trunk_password_env_var(trunk.name) for trunk in config.trunks
    }
    secret = find("Secret", "dialer-secrets")
    assert set(secret["stringData"]) <= known
    assert dialer_container()["envFrom"] == [{"secretRef": {"name": "dialer-secrets"}}]
    volumes = {v["name"]: v for v in pod_template()["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "dialer-config"


# --------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> Manifest:
    (document,) = load_yaml_documents(DEPLOY / "compose.yaml")
    return document


def test_compose_runs_the_daemon_after_a_healthy_postgresql_16(compose: Manifest) -> None:
    services = compose["services"]
    assert set(services) == {"dialer", "postgres"}
    postgres = services["postgres"]
    assert re.fullmatch(r"(docker\.io/library/)?postgres:16([.-].*)?", postgres["image"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "/var/lib/postgresql/data" in postgres["volumes"][0]
    dialer = services["dialer"]
    assert dialer["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert dialer["build"]["dockerfile"] == "deploy/Containerfile"
    assert (DEPLOY / compose["services"]["dialer"]["build"]["context"] / "pyproject.toml").exists()
    assert dialer["env_file"] == ["dialer.env"]
    assert dialer["environment"]["DIALER_DATABASE_URL"].startswith("postgresql://dialer:")
    assert dialer["environment"]["DIALER_HEALTHCHECK_URL"].endswith("/healthz")
    assert dialer["healthcheck"]["test"][0] == "CMD"
    assert any(v.endswith(":/etc/dialer/dialer.toml:ro") for v in dialer["volumes"])
    # Longer than the daemon's default drain, or the engine SIGKILLs calls in progress.
    assert dialer["stop_grace_period"] == "60s"
    assert set(compose["volumes"]) == {"pgdata"}


def test_compose_database_url_reaches_the_published_port(compose: Manifest) -> None:
    postgres_port = compose["services"]["postgres"]["ports"][0]
    host_ip, host_port, _ = postgres_port.split(":")
    url = compose["services"]["dialer"]["environment"]["DIALER_DATABASE_URL"]
    # The daemon uses host networking, so it reaches PostgreSQL on the published address.
    assert compose["services"]["dialer"]["network_mode"] == "host"
    assert f"@{host_ip}:{host_port}/" in url


# --------------------------------------------------------------------------- config examples


def test_example_config_is_accepted_by_the_daemon() -> None:
    env = {**DUMMY_SECRET_ENV, "DIALER_TRUNK_PRIMARY_PASSWORD": "secret"}
    config = load_example_config(DEPLOY / "dialer.example.toml", env=env)
    assert config.api.tokens == ("tok-0123456789",)
    assert config.trunks[0].password == "secret"
    assert config.routing.rules, "the example shows routing rules"
    assert config.reps and config.teams and config.owners


def test_env_example_names_only_variables_the_daemon_reads() -> None:
    config = load_config(DEPLOY / "dialer.example.toml", env={})
    known = {"DIALER_API_TOKENS", "DIALER_DATABASE_URL"} | {
        trunk_password_env_var(trunk.name) for trunk in config.trunks
    }
    names = [
        line.split("=", 1)[0]
        for line in (DEPLOY / "systemd" / "dialer.env.example").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert names and set(names) <= known
    env = {name: "x" for name in names} | {
        "DIALER_DATABASE_URL": "postgresql://dialer:pw@127.0.0.1:5432/dialer"
    }
    assert parse_config({}, env=env).database.url.startswith("postgresql://")


# --------------------------------------------------------------------------- systemd unit


def unit_entries(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as ordered ``(key, value)`` lists (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"entry outside a section: {line}"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def service_settings() -> dict[str, str]:
    return dict(unit_entries(UNIT.read_text())["Service"])


def test_unit_is_a_notify_service_with_watchdog_and_hardening() -> None:
    service = service_settings()
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert int(service["WatchdogSec"].removesuffix("s")) > 0
    assert service["User"] == "dialer"
    assert service["EnvironmentFile"] == "/etc/dialer/dialer.env"
    assert service["ExecStart"].split()[1:] == ["run", "--config", "/etc/dialer/dialer.toml"]
    # The daemon reloads on SIGHUP (dialer.reload; tests/e2e/test_ops_reload_drain.py).
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ReadWritePaths": "/var/lib/dialer",
        "KillMode": "mixed",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert int(service["LimitNOFILE"]) >= 65536
    # Binding UDP/TCP and running PostgreSQL needs these families; nothing else is allowed.
    assert set(service["RestrictAddressFamilies"].split()) >= {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_unit_stop_timeout_covers_the_drain() -> None:
    timeout = int(service_settings()["TimeoutStopSec"].removesuffix("s"))
    drain = load_config(DEPLOY / "dialer.example.toml", env={}).daemon.drain_timeout_s
    assert timeout > drain + 30


@dataclass(frozen=True, slots=True)
class Verification:
    returncode: int
    output: str


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze not installed (Debian package 'systemd')")
    return path


def verify_unit(systemd_analyze: str, text: str, directory: Path) -> Verification:
    """``systemd-analyze verify`` on ``text``, with ExecStart pointing at an executable stub.

    verify insists that ExecStart's binary exists; /opt/dialer/bin/dialer exists only where
    the daemon is installed, so a copy of the unit runs a stub instead. Nothing else changes.
    """
    stub = directory / "dialer"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    exec_start = service_settings()["ExecStart"].split()[0]
    unit = directory / "dialer.service"
    unit.write_text(text.replace(f"ExecStart={exec_start} ", f"ExecStart={stub} "))
    result = subprocess.run(
        [systemd_analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice", "SYSTEMD_LOG_COLOR": "0"},
    )
    return Verification(result.returncode, (result.stdout + result.stderr).strip())


def test_systemd_analyze_verify_passes(systemd_analyze: str, tmp_path: Path) -> None:
    verification = verify_unit(systemd_analyze, UNIT.read_text(), tmp_path)
    assert verification.returncode == 0, verification.output
    assert verification.output == ""


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("WatchdogSec=30s", "WatchdogSecs=30s", "Unknown key"),
        ("ProtectSystem=strict", "ProtectSystem=very", "Failed to parse"),
    ],
    ids=["unknown-key", "bad-value"],
)
def test_systemd_analyze_verify_reports_a_broken_unit(
    systemd_analyze: str, tmp_path: Path, replace: str, by: str, expected: str
) -> None:
    text = UNIT.read_text()
    assert replace in text
    verification = verify_unit(systemd_analyze, text.replace(replace, by), tmp_path)
    assert expected in verification.output


# --------------------------------------------------------------------------- Containerfile


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    arguments: str


def containerfile_instructions(text: str) -> Iterator[Instruction]:
    """Instructions of a Containerfile: comments dropped, ``\\`` continuations joined."""
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored too
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = pending + stripped
        pending = ""
        keyword, _, arguments = line.partition(" ")
        yield Instruction(keyword.upper(), " ".join(arguments.split()))
    assert not pending, "Containerfile ends inside a continued line"


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in containerfile_instructions((DEPLOY / "Containerfile").read_text()):
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def containerfile_uid() -> int:
    users = [i.arguments for i in stages()[-1] if i.keyword == "USER"]
    return int(users[-1].split(":")[0])


def test_containerfile_is_multi_stage_and_copies_from_the_build_stage() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    names = [stage[0].arguments.split()[-1] for stage in all_stages]
    assert all(" AS " in stage[0].arguments.upper() for stage in all_stages)
    copies_from = [
        i.arguments
        for i in all_stages[-1]
        if i.keyword == "COPY" and i.arguments.startswith("--from=")
    ]
    assert copies_from and all(c.split()[0].removeprefix("--from=") in names for c in copies_from)
    # The build stage produces a wheel and installs only from it.
    build_runs = " ".join(i.arguments for i in all_stages[0] if i.keyword == "RUN")
    assert "pip wheel" in build_runs and "--no-index" in build_runs


def test_containerfile_build_inputs_exist() -> None:
    for instruction in stages()[0]:
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from="):
            *sources, _ = instruction.arguments.split()
            for source in sources:
                assert (REPO_ROOT / source).exists(), source


def test_runtime_stage_is_non_root_with_healthcheck_ports_and_entrypoint() -> None:
    runtime = stages()[-1]
    keywords = [i.keyword for i in runtime]
    users = [i.arguments for i in runtime if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    (healthcheck,) = [i.arguments for i in runtime if i.keyword == "HEALTHCHECK"]
    assert "CMD" in healthcheck and "DIALER_HEALTHCHECK_URL" in healthcheck
    env = " ".join(i.arguments for i in runtime if i.keyword == "ENV")
    assert "DIALER_HEALTHCHECK_URL=http://127.0.0.1:8080/healthz" in env
    exposed = {port for i in runtime if i.keyword == "EXPOSE" for port in i.arguments.split()}
    assert exposed == {"8080/tcp", "5060/udp", "5060/tcp"}
    (entrypoint,) = [i.arguments for i in runtime if i.keyword == "ENTRYPOINT"]
    assert entrypoint == '["dialer"]'
    # The unit and the image install the daemon at the same path.
    assert service_settings()["ExecStart"].startswith("/opt/dialer/bin/dialer ")
    assert "PATH=/opt/dialer/bin:$PATH" in env


def test_containerfile_parser_joins_continuations() -> None:
    text = "# c\nFROM a AS b\nRUN x \\\n  # inner comment\n  && y\nUSER 1\n"
    assert list(containerfile_instructions(text)) == [
        Instruction("FROM", "a AS b"),
        Instruction("RUN", "x && y"),
        Instruction("USER", "1"),
    ]
