"""Supervised children (abqa.core.processes): a child that ignores SIGTERM is killed with its group, and a child
started with `die_with_parent` does not outlive a parent killed with SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from abqa.core.processes import spawn, stop_process

# Prints its pid and its own child's pid once SIGTERM is ignored in both, then sleeps: only SIGKILL ends them.
STUBBORN = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                              "print('ready', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    child.stdout.readline()
    print(child.pid, flush=True)
    time.sleep(600)
""")


def gone(pid: int, timeout_s: float = 30.0) -> bool:
    """Whether `pid` has ended (a zombie waiting for a reaper counts as ended) within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_a_child_that_ignores_sigterm_is_killed_with_its_group():
    process = spawn([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(process.stdout.readline())
        code = stop_process(process, grace_s=0.5)
        assert code == -signal.SIGKILL
        assert gone(grandchild), "the child's own child outlived the kill of its process group"
    finally:
        if process.poll() is None:
            process.kill()


def test_a_child_that_stops_on_sigterm_is_not_killed():
    process = spawn([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(600)"],
                    stdout=subprocess.PIPE, text=True)
    process.stdout.readline()
    assert stop_process(process, grace_s=30) == -signal.SIGTERM
    assert stop_process(process, grace_s=30) == -signal.SIGTERM   # stopping a stopped child is harmless


def test_stop_kills_only_the_child_when_it_shares_the_callers_group():
    process = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(process.stdout.readline())
        assert stop_process(process, grace_s=0.5) == -signal.SIGKILL   # and this test process is still here
    finally:
        if process.poll() is None:
            process.kill()
        psutil.Process(grandchild).kill()


# The parent starts a child that ignores nothing and sleeps, prints the child's pid and sleeps too.
PARENT = textwrap.dedent("""
    import sys, time
    from abqa.core.processes import spawn
    child = spawn([sys.executable, "-c", "import time; time.sleep(600)"], die_with_parent={die_with_parent})
    print(child.pid, flush=True)
    time.sleep(600)
""")


def kill_a_parent(die_with_parent: bool) -> int:
    """Start PARENT, SIGKILL it once its child runs (the parent runs no clean-up at all); the child's pid."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(die_with_parent=die_with_parent)],
                              stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    return child


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


@linux_only
def test_a_child_started_to_die_with_its_parent_dies_when_the_parent_is_killed():
    assert gone(kill_a_parent(die_with_parent=True)), "the child outlived its parent"


@linux_only
def test_without_the_option_a_child_outlives_its_parent():
    child = kill_a_parent(die_with_parent=False)
    try:
        assert not gone(child, timeout_s=1.0)       # what the option is for
    finally:
        psutil.Process(child).kill()
