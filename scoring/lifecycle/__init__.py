"""The model lifecycle: schema, pipeline, training, registry, promotion, champion, runs."""
