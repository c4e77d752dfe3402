"""The baseline of B1: a bare Flask endpoint that parses the JSON body and answers 204."""
import json

from flask import Flask, request

app = Flask(__name__)


@app.post("/webhooks/<plugin_key>/<endpoint_id>")
def receive(plugin_key, endpoint_id):
    json.loads(request.get_data())
    return "", 204


@app.get("/healthz")
def healthz():
    return {"status": "ok"}
