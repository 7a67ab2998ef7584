"""At the repository root so that pytest puts the root on `sys.path`: the tests import the
`benchmarks/` folder, which is not part of the installed package.

It also makes idle OpenMP threads sleep instead of spin in the test processes (set before
XGBoost loads its OpenMP runtime; a value in the environment wins): `make test` runs two
workers and each trains XGBoost on `nthread` threads, so spinning threads would take the cores
the other worker needs. Results do not depend on it, only how waiting threads wait.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
