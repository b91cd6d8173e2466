"""No password in any output of any command, whatever shape the connection string has.

Every command runs against a SecantusDB that requires a password, once per shape of connection
string: right, wrong, unreachable, and the shapes pymongo refuses (an upper-case scheme, a raw
``/``, ``@`` or ``:`` in the password, no scheme at all, an ``mongodb+srv://`` host that does not
resolve). The password must appear in no stdout, no stderr and no log record, in any form.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pymongo
import pytest
from strands import Agent

from mongodb_session_manager import MongoDBSessionManager
from mongodb_session_manager.cli import main
from mongodb_session_manager.embedded import EmbeddedServer
from mongodb_session_manager.testing import ScriptedModel

pytestmark = pytest.mark.integration

USER = "ops"
READER = "reader"  # may read DATABASE, nothing else
DATABASE = "msm_cli_passwords"
# Every character a connection-string parser could stumble on.
PASSWORD = "Zq7/s@c:ret%pw"


@dataclass(frozen=True)
class AuthServer:
    """Where the password-protected server listens, and how to reach it."""

    host: str  # "127.0.0.1:port"

    def uri(self, password: str = PASSWORD, *, scheme: str = "mongodb://", user: str = USER) -> str:
        return f"{scheme}{user}:{quote_plus(password)}@{self.host}/?retryWrites=false&directConnection=true"


def _server_command() -> list[str]:
    beside = Path(sys.executable).parent / "secantusd-py"
    found = str(beside) if beside.is_file() else shutil.which("secantusd-py")
    assert found, "secantusd-py is not installed"
    return [found]


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """SecantusDB with ``--auth`` and one root user (created before auth is switched on)."""
    storage = tmp_path_factory.mktemp("auth-db")
    with EmbeddedServer(storage_path=storage) as server:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(server.uri)
        try:
            client.admin.command("createUser", USER, pwd=PASSWORD, roles=["root"])
            client.admin.command("createUser", READER, pwd=PASSWORD, roles=[{"role": "read", "db": DATABASE}])
        finally:
            client.close()
    with EmbeddedServer(storage_path=storage, command=[*_server_command(), "--auth"]) as server:
        yield AuthServer(host=f"127.0.0.1:{server.port}")


WRONG = "Wr0ng/pass@word"

# shape -> (connection string for a server, exit code of a command that would succeed)
Shape = Callable[[AuthServer], str]
SHAPES: dict[str, tuple[Shape, int | None]] = {
    "right password, percent-encoded": (lambda s: s.uri(), None),
    "wrong password": (lambda s: s.uri(WRONG), 6),
    "unreachable": (
        lambda s: f"mongodb://{USER}:{quote_plus(PASSWORD)}@127.0.0.1:1/?serverSelectionTimeoutMS=200",
        3,
    ),
    "MONGODB:// scheme": (lambda s: s.uri(scheme="MONGODB://"), 2),
    "Mongodb:// scheme": (lambda s: s.uri(scheme="Mongodb://"), 2),
    "raw / @ : in the password": (lambda s: f"mongodb://{USER}:{PASSWORD}@{s.host}/", 2),
    "no scheme": (lambda s: f"{USER}:{PASSWORD}@{s.host}", 2),
    "no scheme, encoded": (lambda s: f"{USER}:{quote_plus(PASSWORD)}@{s.host}", 2),
    "mongodb+srv:// that does not resolve": (
        lambda s: f"mongodb+srv://{USER}:{quote_plus(PASSWORD)}@cluster.invalid/?connectTimeoutMS=2000",
        2,
    ),
}

# command -> exit code with the right password
COMMANDS: dict[str, tuple[tuple[str, ...], int]] = {
    "sessions list": (("sessions", "list"), 0),
    "sessions list --json": (("sessions", "list", "--json"), 0),
    "sessions show": (("sessions", "show", "s-1"), 0),
    "sessions show --json": (("sessions", "show", "s-1", "--json"), 0),
    "sessions export": (("sessions", "export", "s-1", "-o", "{tmp}/out.json"), 0),
    "sessions import": (("sessions", "import", "{export}", "--replace"), 0),
    "sessions delete (unknown)": (("sessions", "delete", "nope", "--yes"), 4),
    "metrics": (("metrics", "--group-by", "model"), 0),
    "metrics --json": (("metrics", "--json"), 0),
    "metrics top-sessions": (("metrics", "top-sessions"), 0),
    "metrics tool-usage --json": (("metrics", "tool-usage", "--json"), 0),
    "demo": (("demo", "--session-id", "demo-pw", "--chunk-delay", "0"), 0),
    "demo --json": (("demo", "--json", "--session-id", "demo-pw-json", "--chunk-delay", "0"), 0),
}


def secrets(password: str) -> list[str]:
    return [password, quote_plus(password)]


@pytest.fixture(scope="module")
def export_file(auth_server: AuthServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Session ``s-1`` stored on the password-protected server, and an export of it."""
    with MongoDBSessionManager("s-1", connection_string=auth_server.uri(), database_name=DATABASE) as manager:
        agent = Agent(model=ScriptedModel(["Hello."]), session_manager=manager, callback_handler=None)
        agent("hi")
    target = tmp_path_factory.mktemp("export") / "s-1.json"
    assert (
        main(
            [
                "--uri",
                auth_server.uri(),
                "--database",
                DATABASE,
                "sessions",
                "export",
                "s-1",
                "-o",
                str(target),
            ]
        )
        == 0
    )
    return target


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> tuple[int, str]:
    """Exit code, and everything the run printed or logged."""
    capsys.readouterr()
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        code = main(argv)
    out, err = capsys.readouterr()
    logged = "\n".join(f"{record.getMessage()} {record.args!r}" for record in caplog.records)
    return code, "\n".join((out, err, logged))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("command", COMMANDS)
def test_no_command_prints_or_logs_the_password(
    shape: str,
    command: str,
    auth_server: AuthServer,
    export_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)
    make_uri, failing_code = SHAPES[shape]
    words, success_code = COMMANDS[command]
    argv = [word.format(tmp=tmp_path, export=export_file) for word in words]

    code, everything = run(["--uri", make_uri(auth_server), "--database", DATABASE, *argv], capsys, caplog)

    assert code == (success_code if failing_code is None else failing_code), everything
    for secret in secrets(WRONG if shape == "wrong password" else PASSWORD):
        assert secret not in everything
    assert "Traceback" not in everything


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("command", ["sessions list", "metrics --json", "demo"])
def test_the_password_from_the_environment_is_not_printed_either(
    shape: str,
    command: str,
    auth_server: AuthServer,
    export_file: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_uri, failing_code = SHAPES[shape]
    monkeypatch.setenv("MONGODB_URI", make_uri(auth_server))
    words, success_code = COMMANDS[command]

    code, everything = run(["--database", DATABASE, *words], capsys, caplog)

    assert code == (success_code if failing_code is None else failing_code), everything
    for secret in secrets(WRONG if shape == "wrong password" else PASSWORD):
        assert secret not in everything


def test_a_wrong_password_is_one_clear_line_with_exit_code_6(
    auth_server: AuthServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)

    code = main(["--uri", auth_server.uri(WRONG), "sessions", "list"])

    out, err = capsys.readouterr()
    assert (code, out) == (6, "")
    assert err == (
        f"mongodb-session-manager: error: authentication failed at mongodb://{USER}:***@{auth_server.host}"
        "/?retryWrites=false&directConnection=true: check the user name, the password "
        "(percent-encoded in the URI) and authSource\n"
    )

    code = main(["--uri", auth_server.uri(WRONG), "--json", "metrics"])
    error = json.loads(capsys.readouterr().err)
    assert error["exit_code"] == code == 6
    assert error["error"].startswith("authentication failed at mongodb://ops:***@")


def test_a_command_the_user_may_not_run_is_exit_code_6(
    auth_server: AuthServer,
    export_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)
    reader = ["--uri", auth_server.uri(user=READER), "--database", DATABASE]

    assert main([*reader, "sessions", "list", "--json"]) == 0
    capsys.readouterr()
    code = main([*reader, "sessions", "delete", "s-1", "--yes"])

    out, err = capsys.readouterr()
    assert (code, out) == (6, "")
    assert err.startswith("mongodb-session-manager: error: not authorized: ")
    assert "(code 13)" in err
    assert err.count("\n") == 1
    assert "full error" not in err
    assert main([*reader, "sessions", "show", "s-1", "--json"]) == 0  # nothing was deleted


def test_serve_db_on_a_busy_port_with_a_password_in_the_environment(auth_server: AuthServer) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "mongodb_session_manager", "serve-db", "--port", str(port)],
            capture_output=True,
            text=True,
            env={"MONGODB_URI": auth_server.uri(), "PATH": ""},
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"mongodb-session-manager: error: port {port} on 127.0.0.1 is already in use: stop what listens "
        "there or pick another --port (--port 0 picks a free one)\n"
    )
    for secret in secrets(PASSWORD):
        assert secret not in result.stderr


@pytest.mark.parametrize(
    "stray",
    [
        f"mongodb://{USER}:{quote_plus(PASSWORD)}@db/",
        f"MONGODB://{USER}:{PASSWORD}@db/",
        f"{USER}:{PASSWORD}@db",
    ],
)
@pytest.mark.parametrize("json_output", [False, True])
def test_a_connection_string_in_the_wrong_place_is_masked_in_the_usage_error(
    stray: str, json_output: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*(["--json"] if json_output else []), "sessions", "list", stray])

    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    if json_output:
        assert json.loads(err)["error"].startswith("unrecognized arguments: ")
    else:
        assert "mongodb-session-manager: error: unrecognized arguments: " in err
    for secret in secrets(PASSWORD):
        assert secret not in err
