"""Drift monitoring: a version's reference profile, the statistics, and their accumulation.

``profile`` describes a version's training data and hold-out predictions; ``stats`` holds the
statistics as pure functions; ``accumulate`` summarizes scored data batch by batch against a
profile and ``report`` words the verdict. Pure numpy and scipy: no drift library.
"""
