"""docker-compose.yml has the shape users rely on: a healthy single-node replica set, then the app.

Docker cannot run here, so this reads the file as Compose would (YAML) and checks the pieces
that make ``docker compose up`` work: the replica set flag, a healthcheck that initiates the set
and fails until the node is primary, the app waiting for that, the app's connection string
naming the same replica set and member, a persistent volume and the published ports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _argv(command: str | list[str]) -> list[str]:
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _healthcheck_script(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    assert isinstance(test, list)
    assert test[0] == "CMD", "use the exec form: no shell needed in the mongo image"
    assert test[1] == "mongosh"
    assert "--eval" in test
    return str(test[test.index("--eval") + 1])


def _app_uri(compose: dict[str, Any]) -> str:
    environment = compose["services"]["app"]["environment"]
    if isinstance(environment, list):  # the "KEY=value" form
        environment = dict(item.split("=", 1) for item in environment)
    return str(environment["MONGODB_URI"])


def test_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"mongo", "app"}
    assert services["mongo"]["image"] == "mongo:8"
    assert services["app"]["image"] == "python:3.11-slim"


def test_mongo_runs_as_replica_set_rs0(compose: dict[str, Any]) -> None:
    argv = _argv(compose["services"]["mongo"]["command"])
    assert "--replSet" in argv
    assert argv[argv.index("--replSet") + 1] == "rs0"
    assert "--bind_ip_all" in argv  # else the app container cannot connect


def test_healthcheck_initiates_the_set_and_waits_for_primary(compose: dict[str, Any]) -> None:
    mongo = compose["services"]["mongo"]
    script = _healthcheck_script(mongo)
    assert "rs.initiate(" in script
    assert "_id: 'rs0'" in script
    assert "rs.status()" in script  # initiate only when the set has no configuration yet
    assert "isWritablePrimary" in script
    assert "quit(" in script  # mongosh exits 0 only when healthy
    assert "'ok'" in script
    healthcheck = mongo["healthcheck"]
    assert healthcheck["retries"] >= 10
    for key in ("interval", "timeout", "start_period"):
        assert re.fullmatch(r"\d+s", str(healthcheck[key])), key


def test_healthcheck_script_is_valid_javascript(compose: dict[str, Any]) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot parse the mongosh script")
    script = _healthcheck_script(compose["services"]["mongo"])
    # new Function() parses the body without running it (rs, db, quit are mongosh globals).
    result = subprocess.run(
        [node, "-e", "new Function(process.argv[1])", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_app_waits_for_a_healthy_mongo(compose: dict[str, Any]) -> None:
    depends_on = compose["services"]["app"]["depends_on"]
    assert depends_on["mongo"]["condition"] == "service_healthy"


def test_app_uri_names_the_replica_set_and_its_member(compose: dict[str, Any]) -> None:
    uri = urlsplit(_app_uri(compose))
    assert uri.scheme == "mongodb"
    assert uri.hostname == "mongo"
    assert (uri.port or 27017) == 27017
    assert parse_qs(uri.query)["replicaSet"] == ["rs0"]
    # The member the set advertises must be the address the app connects to.
    script = _healthcheck_script(compose["services"]["mongo"])
    assert "host: 'mongo:27017'" in script


def test_app_installs_the_package_and_serves_the_fastapi_example(compose: dict[str, Any]) -> None:
    app = compose["services"]["app"]
    command = " ".join(_argv(app["command"]))
    assert "/app[fastapi]" in command
    assert "uvicorn examples.example_fastapi_streaming:app" in command
    assert "--host 0.0.0.0" in command
    assert app["working_dir"] == "/app"
    assert any(str(volume).split(":")[:2] == [".", "/app"] for volume in app["volumes"])
    assert (ROOT / "examples" / "example_fastapi_streaming.py").is_file()


def test_ports_are_published(compose: dict[str, Any]) -> None:
    assert "8000:8000" in compose["services"]["app"]["ports"]
    assert "27017:27017" in compose["services"]["mongo"]["ports"]


def test_data_survives_restarts_in_a_named_volume(compose: dict[str, Any]) -> None:
    volumes = compose["services"]["mongo"]["volumes"]
    assert "mongo-data:/data/db" in volumes
    assert "mongo-data" in compose["volumes"]


def test_no_stray_variable_interpolation() -> None:
    # Compose expands every "$"; a literal one must be written "$$". Only ${VAR...} is intended.
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for match in re.finditer(r"\$(?!\$)(?<!\$\$)", text):
        assert text[match.start() : match.start() + 2] == "${", f"bare $ at offset {match.start()}"
