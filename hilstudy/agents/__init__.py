"""lerobot plugins, registered through lerobot's own registries (importing this package registers them)."""

from hilstudy.agents.drqv2 import DrQv2Algorithm, DrQv2AlgorithmConfig, NoisyActor
from hilstudy.agents.sac_bc import SACBCAlgorithm, SACBCAlgorithmConfig, make_algorithm

__all__ = ["DrQv2Algorithm", "DrQv2AlgorithmConfig", "NoisyActor", "SACBCAlgorithm", "SACBCAlgorithmConfig", "make_algorithm"]
