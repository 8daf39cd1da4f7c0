"""Challengers on live traffic: a model's traffic setting, the canary choice, the shadow.

``setting.py`` holds what a person sets (mode, challenger, fraction, sticky key) and its one
validation; ``store.py`` keeps it and the per-day figures in the model's state database;
``router.py`` is what the dataplane asks (which version answers, and the observer that counts
every version's traffic and hands shadow work to ``shadow.py``'s one background thread);
``figures.py`` sums the figures incrementally. Nothing here imports Flask.
"""
