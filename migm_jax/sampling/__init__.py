"""Samplers: schedules, the shared hybrid loop, model policies, noise sources."""
