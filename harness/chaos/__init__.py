"""Nightly chaos: seeded runs of fault schedules, shrinking a failing schedule, replay."""
