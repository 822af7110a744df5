#!/usr/bin/env python3
"""Independent privacy accounting for Hearth's ledger: Google's `dp-accounting` package.

For every setting in a grid of (noise multiplier sigma, releases k, delta) this computes the
(epsilon, delta) guarantee of k Gaussian releases with L2 sensitivity 1 and noise std sigma, three
ways, none of them written by this project:

* exact: the k-fold composition of a Gaussian mechanism is itself a Gaussian mechanism with noise
  sigma / sqrt(k) (its privacy loss is Gaussian); dp_accounting.gaussian_mechanism's analytical
  calibration (Balle & Wang 2018) gives its exact epsilon;
* pld: dp_accounting's privacy loss distribution accountant (PLDAccountant, a pessimistic
  discretisation of the exact loss; a cross-check of the exact value);
* rdp: dp_accounting's RDP accountant over a dense grid of orders (the Renyi curve of the Gaussian
  is alpha * k / (2 sigma^2), which is the zCDP rho = k / (2 sigma^2) the ledger charges, and the
  conversion is Canonne, Kamath & Steinke 2020's, the one OpenDP's make_zCDP_to_approxDP uses).

The Rust test training/tests/accountant_check.rs reads the table this prints and checks the ledger
(OpenDP zCDP composition + conversion) against it, so CI needs no Python. To regenerate:

    python3 -m venv /tmp/venv-acc && /tmp/venv-acc/bin/pip install dp-accounting==0.6.0
    /tmp/venv-acc/bin/python tools/accountant_check.py > training/tests/fixtures/accountant_check.tsv
"""

import math
import sys
from importlib.metadata import version

import numpy as np
from dp_accounting import GaussianDpEvent, SelfComposedDpEvent
from dp_accounting.gaussian_mechanism import get_epsilon_gaussian
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
from dp_accounting.rdp.rdp_privacy_accountant import RdpAccountant

# (label, sigma, releases, delta). Labels name where the setting comes from.
GRID = [
    # README quickstart: sigma = 0.01, two contributions per member in the printed run.
    ("quickstart", 0.01, 2, 1e-6),
    ("quickstart", 0.01, 3, 1e-6),
    # simulations/scenarios: fixed sigma.
    ("sim-smoke", 0.5, 3, 1e-6),
    ("sim-robustness", 0.1, 6, 1e-6),
    ("sim-benchmark", 1.0, 20, 1e-6),
    # simulations/scenarios: epsilon per member over the run (privacy.toml: 10 rounds at
    # epsilon 1, 3, 8; leaf.toml: 20 rounds at 8; churn.toml: 8 rounds at 8). sigma here is
    # 1/sqrt(2 rho/k) for the rho whose OpenDP epsilon is the target (the runner adds a small margin).
    ("sim-privacy-eps1", 14.3279, 10, 1e-6),
    ("sim-privacy-eps3", 5.1978, 10, 1e-6),
    ("sim-privacy-eps8", 2.1797, 10, 1e-6),
    ("sim-leaf-eps8", 3.0826, 20, 1e-6),
    ("sim-churn-eps8", 1.9496, 8, 1e-6),
    # docs/PRIVACY.md anchor: 50 members, 100 rounds, epsilon 8.
    ("privacy-anchor", 6.893, 100, 1e-6),
    # docs/PRIVACY.md canary exposure: one release at epsilon 8 and 1.
    ("canary-eps8", 0.69, 1, 1e-6),
    ("canary-eps1", 4.53, 1, 1e-6),
    # Default budget rho = 1.05 spent in one release and in 1000.
    ("budget-1", 0.690066, 1, 1e-6),
    ("budget-1000", 21.8218, 1000, 1e-6),
]
for sigma in (0.5, 1.0, 2.0, 5.0, 10.0):
    for k in (1, 10, 100):
        for delta in (1e-5, 1e-6, 1e-9):
            GRID.append(("grid", sigma, k, delta))

# Dense Renyi orders: the conversion is only used above 1.01 by dp_accounting.
ORDERS = sorted(set([1.0 + x for x in np.geomspace(0.0101, 2000.0, 4000)]))


def exact(sigma, k, delta):
    return get_epsilon_gaussian(sigma / math.sqrt(k), delta)


def pld(sigma, k, delta):
    acc = PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(SelfComposedDpEvent(GaussianDpEvent(sigma), k))
    return acc.get_epsilon(delta)


def rdp(sigma, k, delta):
    acc = RdpAccountant(ORDERS)
    acc.compose(SelfComposedDpEvent(GaussianDpEvent(sigma), k))
    eps, order = acc.get_epsilon_and_optimal_order(delta)
    return eps, order


def main():
    out = sys.stdout
    out.write(f"# dp-accounting {version('dp-accounting')}, numpy {np.__version__}; "
              "python3 tools/accountant_check.py\n")
    out.write("# epsilon of k Gaussian releases (sensitivity 1, noise std sigma) at delta\n")
    out.write("label\tsigma\tk\tdelta\texact\tpld\trdp\trdp_order\n")
    for label, sigma, k, delta in GRID:
        # The PLD of a tiny sigma is too wide to discretise at 1e-4; the exact value suffices there.
        p = pld(sigma, k, delta) if sigma >= 0.05 else float("nan")
        r, order = rdp(sigma, k, delta)
        out.write(f"{label}\t{sigma}\t{k}\t{delta:g}\t{exact(sigma, k, delta):.6f}\t{p:.6f}\t"
                  f"{r:.6f}\t{order:.4f}\n")


if __name__ == "__main__":
    main()
