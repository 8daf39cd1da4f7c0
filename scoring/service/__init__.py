"""The composition root: the CLI, the processes it starts (serve, api, worker), servers and logs."""
