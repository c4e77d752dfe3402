"""WeCP Integration Hub: the Flask application factory."""
from __future__ import annotations

import logging

from flask import Flask, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from .converters import BoundedIntConverter


def create_app(config: dict | None = None) -> Flask:
    """Build the hub: config, extensions, hub blueprints, then the plugins of HUB_PLUGINS."""
    app = Flask(__name__, instance_relative_config=True)
    # Before any route exists: an <int:…> beyond a 64-bit column is no row of ours (404), never
    # a database error.
    app.url_map.converters["int"] = BoundedIntConverter
    from . import config as hub_config

    hub_config.load(app, config)
    _configure_logging(app)

    from . import extensions, security, sessions

    #: Links in the navigation bar, as (endpoint, label); modules and plugins append to it.
    app.extensions["hub.nav"] = []

    extensions.init_app(app)
    security.init_app(app)
    sessions.init_app(app)

    from . import (
        admin,
        api,
        assessments,
        auth,
        commands,
        connect,
        health,
        inbox,
        jobs,
        mail,
        metrics,
        outbox,
        partners,
        schema,
        settings,
        webhooks,
        work,
        worker,
    )

    commands.init_app(app)
    schema.init_app(app)
    jobs.init_app(app)
    worker.init_app(app)
    outbox.init_app(app)
    inbox.init_app(app)
    mail.init_app(app)
    assessments.init_app(app)
    partners.init_app(app)

    app.before_request(auth.load_user)
    app.register_blueprint(auth.bp)
    app.register_blueprint(settings.bp)
    app.register_blueprint(connect.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(work.bp)
    metrics.init_app(app)
    admin.init_app(app)

    from .registry import load_plugins

    load_plugins(app)

    @app.context_processor
    def inject():
        from .registry import all_plugins

        return {"current_user": g.get("user"), "hub_plugins": all_plugins(),
                "hub_nav": app.extensions["hub.nav"],
                "company_name": app.config["HUB_COMPANY_NAME"]}

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # Never echo request data or internals: a fixed page per status.
        from .security import error_headers

        headers = error_headers(exc)
        if request.path.startswith("/partners/"):
            # The provider's own error shape (WWW-Authenticate tells it how to present its key).
            from .partners import error_body

            headers += [(k, v) for k, v in exc.get_headers() if k == "WWW-Authenticate"]
            return error_body(exc) or jsonify({"error": exc.description or exc.name}), exc.code, headers
        if request.path.startswith(("/api/", "/webhooks/")):
            return jsonify({"error": exc.description or exc.name}), exc.code, headers
        try:
            return render_template("hub/error.html", error=exc), exc.code, headers
        except Exception:  # no URL adapter (e.g. an untrusted Host): plain text, still no details
            return f"{exc.code} {exc.name}", exc.code, {"Content-Type": "text/plain"}

    return app


def _configure_logging(app: Flask) -> None:
    from .security import install_log_redaction

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    install_log_redaction()
