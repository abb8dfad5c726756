"""`make run`'s supervisor restarts a crashed service with back-off while the others keep running."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from pathlib import Path

from deploy.local import supervisor
from deploy.local.supervisor import Output, Supervisor

#: Writes its pid on a line of the file named by argv[1], then sleeps until stopped.
LONG_RUNNING = "import os, sys, time\nopen(sys.argv[1], 'a').write(f'{os.getpid()}\\n')\ntime.sleep(3600)\n"
#: Writes its pid, then dies by SIGKILL at once, as an OOM kill would.
CRASHING = "import os, sys\nopen(sys.argv[1], 'a').write(f'{os.getpid()}\\n')\nos.kill(os.getpid(), 9)\n"


def pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


async def until(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_crashed_service_is_restarted_with_back_off_while_the_others_keep_running(tmp_path, monkeypatch):
    monkeypatch.setattr(supervisor, "RESTART_MIN_S", 0.05)
    files = {name: tmp_path / f"{name}.pids" for name in ("crasher", "victim", "bystander")}
    services = {
        "crasher": [sys.executable, "-c", CRASHING, str(files["crasher"])],
        "victim": [sys.executable, "-c", LONG_RUNNING, str(files["victim"])],
        "bystander": [sys.executable, "-c", LONG_RUNNING, str(files["bystander"])],
    }
    out = io.StringIO()
    runner = Supervisor(env=os.environ, cwd=tmp_path, out=Output(services, stream=out))
    running = asyncio.create_task(runner.run(services))
    try:
        await until(lambda: pids(files["victim"]) and pids(files["bystander"]))
        os.kill(pids(files["victim"])[0], signal.SIGKILL)  # a long-running service dies from outside
        await until(lambda: len(pids(files["victim"])) == 2 and len(pids(files["crasher"])) >= 4)
    finally:
        runner.stopping.set()
        await asyncio.wait_for(running, 20)
    log = out.getvalue()
    assert len(pids(files["bystander"])) == 1, "a service that never failed must not be restarted"
    assert "victim    | killed by SIGKILL; restarting in 0.05 s" in log
    # Each consecutive crash waits twice as long as the one before.
    for delay in ("0.05", "0.1", "0.2"):
        assert f"crasher   | killed by SIGKILL; restarting in {delay} s" in log
    for pid in pids(files["victim"]) + pids(files["bystander"]):
        assert not _alive(pid), "stopping the supervisor stops every service"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie is dead


def test_back_off_doubles_up_to_its_maximum_and_starts_over_after_a_healthy_run():
    backoff = supervisor.Backoff(1, 8, healthy_after=60)
    assert [backoff.delay(ran_for=2) for _ in range(5)] == [1, 2, 4, 8, 8]
    assert backoff.delay(ran_for=60) == 1  # it had been up a minute: a new crash, not the same crash loop
    assert backoff.delay(ran_for=0) == 2
