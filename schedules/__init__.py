"""Scheduled jobs (nightly retrain, score sweep); built in a later issue."""
