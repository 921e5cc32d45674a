import os
import signal

import matplotlib

matplotlib.use("Agg")

# A run started in the background by a non-interactive shell (`pytest &`, nohup, some CI
# runners) inherits SIGINT ignored: Python then never raises KeyboardInterrupt, and the Ctrl-C
# tests waited out their timeouts (minutes) before failing. They test our handling of Ctrl-C,
# not the shell's, so the test process (and the subprocesses it starts) get the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Generated code and numba's compiled cache for the test run go to one place per checkout,
# so repeated local runs reuse them; CI starts from a clean checkout and compiles afresh.
os.environ.setdefault(
    "ODEFLOW_CACHE_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".odeflow-cache")
)

# MNIST: the full test set where the user has it (ODEFLOW_MNIST_DIR, ODEFLOW_DATA or the user
# cache), else the 1000-image fixture shipped with the tests, so a fresh clone runs every
# real-data code path without a download (see tests/mnist_data.py).
import mnist_data  # noqa: E402

if not mnist_data.FULL:
    os.environ["ODEFLOW_MNIST_DIR"] = str(mnist_data.FIXTURE_DIR)


def pytest_report_header(config):
    return f"data: {mnist_data.WHERE}"
