import os

import matplotlib

matplotlib.use("Agg")

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
