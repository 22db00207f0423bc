"""lerobot plugins, registered through lerobot's own registries (importing this package registers them)."""

from hilstudy.agents.sac_bc import SACBCAlgorithm, SACBCAlgorithmConfig, make_algorithm

__all__ = ["SACBCAlgorithm", "SACBCAlgorithmConfig", "make_algorithm"]
