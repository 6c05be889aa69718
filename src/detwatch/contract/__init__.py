"""The wire format: what crosses the companion's edge, with no Flask and no SQL.

Prediction events as the decorator emits them (:mod:`~detwatch.contract.predictions`)
and as OTLP/HTTP logs carry them (:mod:`~detwatch.contract.otlp`), feedback items
(:mod:`~detwatch.contract.feedback`), signed webhooks (:mod:`~detwatch.contract.webhooks`),
the fixed histogram bins that aggregates and dashboards share
(:mod:`~detwatch.contract.bins`) and the rules every text field follows
(:mod:`~detwatch.contract.textfields`), and the request and response shape of every
``/v1`` route (:mod:`~detwatch.contract.shapes`), from which the OpenAPI schemas, the
routes' answers and the client's return types come. Everything above (storage, analyses, the HTTP
layer, the client) reads these; they read nothing of the companion's.
"""
