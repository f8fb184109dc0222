"""Meta-reinforcement learning: environments, policies, rollouts, returns, surrogate estimators, TRPO."""
