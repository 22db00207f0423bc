"""The learner's speed: hilstudy's `sac_bc` update against lerobot's stock `SACAlgorithm.update` (issue 8).

    .venv/bin/python benchmarks/learner.py [--updates 300] [--threads 1]

Both algorithms get the same config (the default study's `policy` and `finetune` sections), the same
initial weights and the same batch of 256 transitions (state observations, 30% of them interventions),
sampled once from hilstudy's two buffers and fed again at every update, so only the update is timed.
Prints updates/s of stock SAC, of `sac_bc` with bc_weight 0 (the same computation: its losses must equal
stock's, checked here) and with the study's bc_weight 0.5; the cost of sampling one batch from the two
buffers; and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import resource
import time

import numpy as np
import torch

from hilstudy.finetune import algorithm_config, make_buffer
from hilstudy.params import load, run_params
from hilstudy.policy import make_policy, make_policy_config


def synthetic_buffers(state_dim: int, n: int, seed: int = 0):
    """An online and an offline buffer of n random transitions each (values in the env's normalized ranges)."""
    from lerobot.rl.data_sources.data_mixer import OnlineOfflineMixer

    g = torch.Generator().manual_seed(seed)
    bufs = []
    for _ in range(2):
        buf = make_buffer(n, ["observation.state"], pixels=False)
        for _ in range(n):
            buf.add(
                state={"observation.state": torch.rand(1, state_dim, generator=g) * 2 - 1},
                action=torch.rand(1, 4, generator=g) * 2 - 1,
                reward=float(torch.rand(1, generator=g) < 0.05),
                next_state={"observation.state": torch.rand(1, state_dim, generator=g) * 2 - 1},
                done=bool(torch.rand(1, generator=g) < 0.05),
                truncated=False,
                complementary_info={"is_intervention": (torch.rand(1, generator=g) < 0.3).float()},
            )
        bufs.append(buf)
    return OnlineOfflineMixer(bufs[0], bufs[1], online_ratio=0.5)


def repeat(batch):
    while True:  # a fresh top-level dict per update: lerobot's update may replace entries
        yield {k: (dict(v) if isinstance(v, dict) else v) for k, v in batch.items()}


def timed(algorithm, batch, updates: int) -> tuple[float, dict]:
    it = repeat(batch)
    first = algorithm.update(it)  # warm-up (allocations), and the losses to compare
    t0 = time.perf_counter()
    for _ in range(updates):
        algorithm.update(it)
    return updates / (time.perf_counter() - t0), dict(first.losses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--updates", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the study uses finetune.torch_threads = 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from lerobot.rl.algorithms.sac.configuration_sac import SACAlgorithmConfig
    from lerobot.rl.algorithms.sac.sac_algorithm import SACAlgorithm

    from hilstudy.agents import SACBCAlgorithm
    from hilstudy.demos import dataset_features
    from hilstudy.sim import make_env

    study = load()
    with make_env(study.env) as env:
        features = dataset_features(env)
        state_dim = env.state_dim
    torch.manual_seed(0)
    policy, _, _ = make_policy(make_policy_config(features, study.policy))
    policy.train()

    mixer = synthetic_buffers(state_dim, 2000)
    t0 = time.perf_counter()
    for _ in range(200):
        mixer.sample(256)
    sample_ms = (time.perf_counter() - t0) / 200 * 1e3
    torch.manual_seed(1)
    batch = mixer.sample(256)

    rates, losses = {}, {}
    for name, weight in (("stock SAC", None), ("sac_bc w=0", 0.0), ("sac_bc w=0.5", 0.5)):
        params = run_params(study, "scratch", 0) if weight is None else load(overrides={"finetune.bc_weight": weight})
        cfg = algorithm_config(params, policy.config)
        torch.manual_seed(3)  # the critics are initialized in the algorithm's constructor: the same for all three
        if weight is None:  # lerobot's own config class and algorithm, the same field values
            base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(SACAlgorithmConfig)}
            algorithm = SACAlgorithm(copy.deepcopy(policy), SACAlgorithmConfig(**base))
        else:
            algorithm = SACBCAlgorithm(copy.deepcopy(policy), cfg)
        algorithm.make_optimizers_and_scheduler()  # as lerobot's RLTrainer does
        torch.manual_seed(2)
        rates[name], losses[name] = timed(algorithm, batch, args.updates)

    same = all(np.isclose(losses["stock SAC"][k], losses["sac_bc w=0"][k], rtol=0, atol=0) for k in losses["stock SAC"])
    base = rates["stock SAC"]
    for name, r in rates.items():
        print(f"{name:13s} {r:6.1f} updates/s  ({1e3 / r:5.1f} ms)  ratio to stock {r / base:.2f}x")
    print(f"sac_bc w=0 losses equal stock SAC's on the same batch: {same}")
    for name, values in losses.items():
        print(f"  first-update losses {name:13s} " + "  ".join(f"{k} {v:.6f}" for k, v in values.items()))
    print(f"sampling one batch of 256 from the two buffers: {sample_ms:.2f} ms")
    print(f"torch threads {torch.get_num_threads()}; peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
