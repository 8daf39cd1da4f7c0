"""The schedule: one APScheduler per data folder running the nightly retrain and the score sweep.

``schedules.scheduler.Schedule`` wires the scheduler (started only by ``dropscore worker`` and
``dropscore serve``); ``schedules.jobs`` holds the job functions it calls by text reference.
"""
