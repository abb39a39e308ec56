"""A real msbd for the SDK's tests: its own MSB_HOME per test session, the binaries from
MSB_BIN_DIR (as the end-to-end tests), started by the SDK itself on first use."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import msb

REPO = Path(__file__).resolve().parents[3]


def bin_dir() -> Path:
    return Path(os.environ.get("MSB_BIN_DIR", "/var/tmp/msb-target/msb-bin"))


@pytest.fixture(scope="session")
def document():
    return json.loads((REPO / "docs" / "openapi.json").read_text())


@pytest.fixture(scope="session")
def home():
    if os.geteuid() != 0:
        pytest.skip("sandboxes need root (namespaces, cgroups)")
    if not (bin_dir() / "msbd").is_file():
        pytest.skip(f"no msbd in {bin_dir()} (set MSB_BIN_DIR)")
    os.environ["MSB_BIN_DIR"] = str(bin_dir())
    os.environ.setdefault("MSB_AGENTD", str(bin_dir() / "msb-agentd"))
    os.environ["MSB_PROMETHEUS_ADDR"] = "127.0.0.1:0"
    path = Path(tempfile.mkdtemp(prefix="msb-py-", dir="/tmp"))
    os.chmod(path, 0o700)
    yield path
    # Sandboxes outlive msbd by design: remove them, or they would outlive the test run.
    for name in cli(path, "ls", "-a", "-q", check=False).split():
        cli(path, "rm", "-f", name, check=False)
    cli(path, "server", "stop", check=False)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def client(home):
    client = msb.Client(home)
    yield client
    for sandbox in client.list():
        try:
            sandbox.remove(force=True)
        except msb.MsbError:
            pass


def cli(home: Path, *args: str, check: bool = True) -> str:
    """`msb ARGS` on the same home (to compare what the SDK says with what the CLI says)."""
    run = subprocess.run([str(bin_dir() / "msb"), *args], env=dict(os.environ, MSB_HOME=str(home)),
                         capture_output=True, text=True, timeout=120)
    if check and run.returncode != 0:
        raise AssertionError(f"msb {args}: {run.stderr}")
    return run.stdout
