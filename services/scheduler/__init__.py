"""Scheduler: agent lifecycle, durable journal, placement on executors."""
