"""Integrations shipped with the hub, one package per plugin key."""
