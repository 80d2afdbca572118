"""CPU forward time of every network family at its paper input size, batch 1 and 8 (eval mode, fp32).

    python benchmarks/forward_times.py [MODEL ...]

Same measurement as `posekit info MODEL --input HxW --bench`; absolute times on shared machines are noisy,
so compare models measured in one run.
"""
from __future__ import annotations

import sys

import torch

from posekit.deploy.modelcard import forward_ms, settings_for

DEFAULT = ["hrnet_w32", "hrnet_w48", "simplebaseline_res50", "mspn_1stage", "mspn_4stage", "hourglass_8stack",
           "ke_multiscale_hourglass", "cpm_6stage"]


def main() -> None:
    names = sys.argv[1:] or DEFAULT
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| model | input | batch 1 (ms) | batch 8 (ms) |\n|---|---|---|---|")
    for name in names:
        hw, k, _ = settings_for(name)[0]
        b1 = forward_ms(name, hw, k, 1)
        b8 = forward_ms(name, hw, k, 8, repeats=1)
        print(f"| `{name}` | {hw[0]}x{hw[1]} | {b1:.0f} | {b8:.0f} |", flush=True)


if __name__ == "__main__":
    main()
