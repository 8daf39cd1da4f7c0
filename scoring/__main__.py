"""``python -m scoring`` is the ``dropscore`` command."""

from scoring.service.cli import main

if __name__ == "__main__":
    main(prog_name="dropscore")
