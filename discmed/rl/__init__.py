"""Reinforcement learning on consultations: the environment (episodes with the simulated patient) and its rewards."""
