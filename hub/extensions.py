"""Extension objects shared by the hub and its plugins, each bound to an app by init_app."""
from __future__ import annotations

import os
import weakref

import redis
from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData

# Stable constraint names so Alembic can alter them on every database.
naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=naming_convention))
csrf = CSRFProtect()


def init_app(app) -> None:
    db.init_app(app)
    csrf.init_app(app)
    with app.app_context():
        _engines.add(db.engine)


# A forked process (a worker's work process, gunicorn's workers) must not reuse its parent's database sockets.
_engines: weakref.WeakSet = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [e.dispose(close=False) for e in list(_engines)])


def get_redis(app=None) -> redis.Redis:
    """The app's Redis client (created on first use, so start-up does no I/O)."""
    app = app or current_app
    client = app.extensions.get("hub.redis")
    if client is None:
        client = redis.Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=2,
                                      socket_timeout=5, health_check_interval=30)
        app.extensions["hub.redis"] = client
    return client
