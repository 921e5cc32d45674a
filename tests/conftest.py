import os

import matplotlib

matplotlib.use("Agg")

# Generated code and numba's compiled cache for the test run go to one place per checkout,
# so repeated local runs reuse them; CI starts from a clean checkout and compiles afresh.
os.environ.setdefault("ODEFLOW_CACHE_DIR",
                      os.path.join(os.path.dirname(os.path.dirname(__file__)), ".odeflow-cache"))
