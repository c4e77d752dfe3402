"""The `lever-sandbox` command: serve the sandbox with werkzeug's threaded server."""
from __future__ import annotations

import click
from werkzeug.serving import run_simple

from .app import DEFAULT_CLIENT, create_app


def build_config(seed, client_id, client_secret, redirect_uris, access_token_ttl,
                 state_file=None, stage_change_off=False) -> dict:
    """Turn command-line options into create_app config; unset options keep the defaults."""
    config: dict = {}
    if state_file:
        config["SANDBOX_STATE_FILE"] = str(state_file)
    if stage_change_off:
        config["SANDBOX_STAGE_CHANGE_OFF"] = True
    if seed:
        config["SANDBOX_SEED"] = seed
    if client_id or client_secret or redirect_uris:
        config["SANDBOX_CLIENTS"] = [{
            **DEFAULT_CLIENT,
            "client_id": client_id or DEFAULT_CLIENT["client_id"],
            "client_secret": client_secret or DEFAULT_CLIENT["client_secret"],
            "redirect_uris": list(redirect_uris) or DEFAULT_CLIENT["redirect_uris"],
        }]
    if access_token_ttl is not None:
        config["SANDBOX_ACCESS_TOKEN_TTL"] = access_token_ttl
    return config


@click.command("lever-sandbox")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5001, show_default=True, type=int)
@click.option("--seed", type=click.Path(exists=True, dir_okay=False),
              help="Seed JSON (default: the shipped seed.json).")
@click.option("--client-id", help="OAuth client id (default wecp-hub-demo).")
@click.option("--client-secret", help="OAuth client secret (default sandbox-secret).")
@click.option("--redirect-uri", "redirect_uris", multiple=True,
              help="Allowed redirect URI; repeat for several.")
@click.option("--access-token-ttl", type=int, help="Access token lifetime in seconds (3600).")
@click.option("--state-file", type=click.Path(dir_okay=False),
              help="Keep accounts, authorized apps, tokens and webhooks in this JSON file across "
                   "restarts (read at start when it exists).")
@click.option("--stage-change-off", is_flag=True,
              help="Seeded accounts start with Candidate Stage Change off, as a new Lever account does.")
def lever_sandbox_command(host, port, seed, client_id, client_secret, redirect_uris,
                          access_token_ttl, state_file, stage_change_off):
    """Run the Lever sandbox (OAuth, REST v1, webhooks, UI) in this one process."""
    app = create_app(build_config(seed, client_id, client_secret, redirect_uris,
                                  access_token_ttl, state_file, stage_change_off))
    click.echo(f"Lever sandbox on http://{host}:{port}/ (audience http://{host}:{port}/v1/)")
    # One process on purpose: all state lives in memory in this process.
    run_simple(host, port, app, threaded=True, use_reloader=False)
