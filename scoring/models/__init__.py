"""Every served model as one object, built by one factory from settings.

``model.py`` holds the per-model object (``Model``: its settings view, state database, ledger,
registry, runs, champion, other versions, data layout) and the set of all of them with the
stores every model shares (``Models``, ``SharedStores``); ``factory.py`` is the one place a store
is constructed (``open_models``, ``open_model``, ``open_shared``); ``job_ids.py`` names each
model's scheduled jobs. The API, the background work, the CLI, the jobs, the runner and the
trainer receive these objects instead of opening stores of their own, so a new store backend
changes the factory and nothing else. Nothing here imports Flask or scikit-learn.
"""
