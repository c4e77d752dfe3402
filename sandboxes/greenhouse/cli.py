"""``python -m sandboxes.greenhouse --port 5002``: the Greenhouse sandbox on werkzeug's threaded server."""
from __future__ import annotations

import argparse

from werkzeug.serving import run_simple

from .app import create_app


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandboxes.greenhouse", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5002)
    options = parser.parse_args(argv)
    # One process on purpose: every job, candidate and test lives in this process's memory.
    run_simple(options.host, options.port, create_app(), threaded=True, use_reloader=False)
