"""``./run test`` stops pytest and every xdist worker when it is interrupted, however the
interrupt comes (UX review): Ctrl-C in a terminal, or SIGINT or SIGTERM to the script alone (an
IDE's stop button, a CI cancel, ``timeout``). It waits for them before it removes the tests'
temporary folder.

Each case runs the real ``run`` script (a copy, next to this project's ``pyproject.toml`` and
the virtualenv running these tests) on a few dummy tests that wait a minute each, interrupts it
once they have started, and then looks at every process left in the script's session (Linux).
Before the fix, SIGINT to the script was ignored until every test had ended, and SIGTERM killed
the script at once, removing the folder while pytest and its workers went on using it."""

from __future__ import annotations

import glob
import hashlib
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

DUMMY_TESTS = '''
import os, pathlib, time
import pytest

@pytest.mark.parametrize("i", range(4))
def test_waits(i):
    box = pathlib.Path(__file__).parent
    (box / f"tmpdir-{i}").write_text(os.environ["TMPDIR"])
    (box / f"started-{i}").touch()
    time.sleep(60)
'''


def _session(sid: int) -> list[int]:
    """The live processes of session ``sid`` (zombies left out)."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            out.append(int(stat.split("/")[2]))
    return out


@pytest.fixture
def box(tmp_path) -> Path:
    """A copy of ``run`` with ``pyproject.toml``, ``.venv`` (this virtualenv) and the dummy tests."""
    venv = Path(sys.prefix)
    stamp = hashlib.sha1((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    if not sys.platform.startswith("linux") or not (venv / f".installed-{stamp}").exists():
        message = "needs Linux and a virtualenv made by ./run for this pyproject.toml"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(message + "; CI=true runs the suite through ./run, which makes it", pytrace=False)
        pytest.skip(message)  # e.g. a developer's own virtualenv, or macOS: the script's process handling is Linux's
    shutil.copy2(ROOT / "run", tmp_path / "run")
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / ".venv").symlink_to(venv)
    (tmp_path / "dummy").mkdir()
    (tmp_path / "dummy" / "test_dummy.py").write_text(DUMMY_TESTS)
    return tmp_path


@pytest.mark.slow(seconds=15)
@pytest.mark.parametrize("interrupt", ["Ctrl-C in a terminal", "SIGINT to the script", "SIGTERM to the script"])
def test_an_interrupted_run_test_leaves_no_pytest_or_worker_process_behind(box, interrupt):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CHEETAH_TEST_", "COV_"))}
    env["CHEETAH_TEST_WORKERS"] = "2"
    command = ["./run", "test", "dummy", "-p", "no:cacheprovider"]
    if interrupt == "Ctrl-C in a terminal":
        pid, terminal = pty.fork()  # a session of its own, the pty its controlling terminal
        if pid == 0:
            os.chdir(box)
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # as a terminal's shell starts it, even if ours ignores it
            os.execve(command[0], command, env)
        proc = None
    else:
        default_sigint = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
        proc = subprocess.Popen([sys.executable, "-c", default_sigint, *command], cwd=box, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pid = proc.pid
    try:
        deadline = time.monotonic() + 90
        while len(list(box.glob("dummy/started-*"))) < 2:  # both workers are in a test
            assert time.monotonic() < deadline, "the dummy tests did not start"
            time.sleep(0.2)
        assert len(_session(pid)) >= 4  # the script, pytest and its two workers
        if proc is None:
            os.write(terminal, b"\x03")
        else:
            os.kill(pid, signal.SIGINT if interrupt == "SIGINT to the script" else signal.SIGTERM)
        started = time.monotonic()
        if proc is None:
            while True:  # the terminal's output, until it closes
                try:
                    if not os.read(terminal, 65536):
                        break
                except OSError:
                    break
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
        else:
            code = proc.wait(timeout=30)
        took = time.monotonic() - started
        assert code not in (0, None) and took < 20, (code, took)
        time.sleep(0.5)
        assert _session(pid) == []  # no pytest, no worker left
        for recorded in box.glob("dummy/tmpdir-*"):  # the script's own folder, removed after them
            folder = recorded.read_text()
            if folder.startswith("/dev/shm/cheetah-tests."):
                assert not os.path.exists(folder)
    finally:  # whatever a failed case left: its processes, and the folder its script did not remove
        for leftover in _session(pid):
            os.kill(leftover, signal.SIGKILL)
        for recorded in box.glob("dummy/tmpdir-*"):
            if recorded.read_text().startswith("/dev/shm/cheetah-tests."):
                shutil.rmtree(recorded.read_text(), ignore_errors=True)
        if proc is None:
            os.close(terminal)
