"""pytest plugin: end a test process that imported bpy with ``os._exit`` once pytest is done.

The bpy module (seen with 4.5.x) deadlocks at process exit, in a C++ static destructor
(``delayed_close_thread``), whenever anything was registered with Blender during the run and
still held at exit (an add-on's classes, a persistent handler): the process prints Blender's
leak report and never ends. Every report and summary is written by then, so ending the
process directly loses nothing (fixtures have stopped the servers they started).
Loaded by tests/conftest.py, and with ``-p tests.bpy_exit`` by the bpy-5 step (--noconftest).
"""

import os
import sys

import pytest

_status = {"code": 0}


def pytest_sessionfinish(session, exitstatus):
    _status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if "bpy" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_status["code"])
