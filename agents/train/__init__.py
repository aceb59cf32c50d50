"""Training agents: PPO (SB3), its callbacks, Ray Tune and RLlib, model files, rule tuning."""
