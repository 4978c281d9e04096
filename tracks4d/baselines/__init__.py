"""Classical (non-learned) reconstruction baselines."""

from tracks4d.baselines.factorization import RigidFactorization, rigid_factorization

__all__ = ["RigidFactorization", "rigid_factorization"]
