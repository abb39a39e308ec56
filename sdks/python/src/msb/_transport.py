"""Talking to msbd: HTTP/1.1 over the unix socket of an MSB_HOME, starting msbd when nobody
answers (as the ``msb`` CLI does)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple

from ._errors import DaemonUnreachableError, error_from

START_TIMEOUT_S = 20.0


def default_home() -> Path:
    """``$MSB_HOME``, else ``~/.msb``."""
    home = os.environ.get("MSB_HOME")
    return Path(home) if home else Path.home() / ".msb"


def find_msbd() -> Optional[str]:
    """``$MSB_BIN_DIR/msbd``, else ``msbd`` on the PATH, else msb's install prefix."""
    bin_dir = os.environ.get("MSB_BIN_DIR")
    if bin_dir and os.path.isfile(os.path.join(bin_dir, "msbd")):
        return os.path.join(bin_dir, "msbd")
    found = shutil.which("msbd")
    if found:
        return found
    installed = "/usr/local/lib/msb/msbd"
    return installed if os.path.isfile(installed) else None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: Optional[float]) -> None:
        super().__init__("msbd", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class Transport:
    """One msbd: its socket, and the home it starts msbd for (``None``: never start one)."""

    def __init__(self, home: Optional[Path], socket_path: Path, msbd: Optional[str]) -> None:
        self.home = home
        self.socket_path = socket_path
        self.msbd = msbd
        self._started = False

    def _connect_raw(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(self.socket_path))
        return sock

    def ensure_running(self) -> None:
        """Connects once; starts msbd if nobody answers and a home is known."""
        try:
            self._connect_raw().close()
            return
        except PermissionError as e:
            raise DaemonUnreachableError(f"{self.socket_path}: {e}: MSB_HOME belongs to another user") from e
        except OSError as e:
            if self.home is None:
                raise DaemonUnreachableError(f"msbd is not answering on {self.socket_path}: {e}") from e
        self._start_daemon()

    def _start_daemon(self) -> None:
        assert self.home is not None
        msbd = self.msbd or find_msbd()
        if not msbd:
            raise DaemonUnreachableError(
                "msbd is not running and was not found (set MSB_BIN_DIR or put msbd on the PATH)")
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(self.home.stat().st_mode)
        if mode & 0o077:
            os.chmod(self.home, 0o700)
        log_path = self.home / "msbd.log"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                env = dict(os.environ, MSB_HOME=str(self.home))
                child = subprocess.Popen([msbd], env=env, stdin=subprocess.DEVNULL, stdout=fd,
                                         stderr=fd, start_new_session=True)
            finally:
                os.close(fd)
            while time.monotonic() < deadline:
                try:
                    self._connect_raw().close()
                    return
                except OSError:
                    pass
                code = child.poll()
                if code is not None:
                    if code != 0:
                        tail = log_path.read_text(errors="replace").splitlines()[-5:]
                        raise DaemonUnreachableError(
                            f"msbd exited ({code}) before it was ready; last lines of {log_path}:\n"
                            + "\n".join(tail))
                    # Exit 0: another msbd holds the home's lock and is starting or leaving.
                    time.sleep(0.05)
                    break
                time.sleep(0.01)
            else:
                raise DaemonUnreachableError(
                    f"msbd did not answer on {self.socket_path} within {START_TIMEOUT_S:.0f} s")

    def connection(self, timeout: Optional[float] = None) -> _UnixConnection:
        if not self._started:
            self.ensure_running()
            self._started = True
        return _UnixConnection(str(self.socket_path), timeout)

    def request(self, method: str, path: str, body: Any = None, *, operation: str = "",
                timeout: Optional[float] = None) -> Any:
        """One JSON request; the decoded answer, or the typed error."""
        status, data = self.request_raw(method, path, body, timeout=timeout)
        parsed: Any = None
        if data:
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = data.decode(errors="replace")
        if status >= 300:
            raise error_from(status, parsed, operation=operation)
        return parsed

    def request_raw(self, method: str, path: str, body: Any = None, *,
                    timeout: Optional[float] = None) -> Tuple[int, bytes]:
        conn = self.connection(timeout)
        headers = {"Host": "msbd"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except OSError as e:
            raise DaemonUnreachableError(f"talking to msbd on {self.socket_path}: {e}") from e
        finally:
            conn.close()

    def stream_lines(self, path: str, *, operation: str = "") -> Iterator[Any]:
        """A GET whose answer is JSON Lines: yields each decoded line as it arrives."""
        conn = self.connection(None)
        try:
            conn.request("GET", path, headers={"Host": "msbd"})
            response = conn.getresponse()
            if response.status >= 300:
                data = response.read()
                try:
                    parsed: Any = json.loads(data)
                except ValueError:
                    parsed = data.decode(errors="replace")
                raise error_from(response.status, parsed, operation=operation)
            while True:
                line = response.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        except OSError as e:
            raise DaemonUnreachableError(f"talking to msbd on {self.socket_path}: {e}") from e
        finally:
            conn.close()

    def upgrade(self, path: str, token: str) -> socket.socket:
        """Opens ``path`` with ``Upgrade: token``; the connection after the 101 answer."""
        if not self._started:
            self.ensure_running()
            self._started = True
        try:
            sock = self._connect_raw()
            sock.sendall((f"GET {path} HTTP/1.1\r\nHost: msbd\r\nConnection: upgrade\r\n"
                          f"Upgrade: {token}\r\n\r\n").encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(1)
                if not chunk:
                    raise DaemonUnreachableError("msbd closed the connection before answering")
                head += chunk
        except OSError as e:
            raise DaemonUnreachableError(f"talking to msbd on {self.socket_path}: {e}") from e
        status_line = head.split(b"\r\n", 1)[0].decode()
        status = int(status_line.split()[1])
        if status != 101:
            length = 0
            for line in head.decode(errors="replace").split("\r\n")[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = b""
            while len(body) < length:
                chunk = sock.recv(length - len(body))
                if not chunk:
                    break
                body += chunk
            sock.close()
            try:
                parsed: Any = json.loads(body)
            except ValueError:
                parsed = body.decode(errors="replace")
            raise error_from(status, parsed)
        return sock
