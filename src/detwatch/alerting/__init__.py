"""Alerting: what the observability stack is told to watch, generated from one definition.

An alert is defined once (:mod:`detwatch.alerting.definitions`) and turned into what each
component of the user's stack reads: PromQL (:mod:`~detwatch.alerting.promql`),
Prometheus recording and alerting rules (:mod:`~detwatch.alerting.rules`), Grafana
dashboards and provisioning (:mod:`~detwatch.alerting.dashboards`,
:mod:`~detwatch.alerting.grafana`, :mod:`~detwatch.alerting.grafana_push`), the
Collector's configuration (:mod:`~detwatch.alerting.collector`) and a local stack
(:mod:`~detwatch.alerting.stack`); :mod:`~detwatch.alerting.generate` writes them all.
Pure functions of their inputs: no Flask, no database, so ``detwatch generate --check``
and the companion produce byte-identical files.
"""
