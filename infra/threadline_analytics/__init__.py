"""threadline's analytics: the event lake's layout and columns, and the local report.

Deployed, every event on the bus lands in S3 through Firehose (template.yaml,
``Analytics*`` resources) and Athena runs the named queries in ``queries/``. Locally
the stack writes the same files under a folder (:class:`~threadline_analytics.lake.LakeWriter`)
and ``make report`` runs the same SQL with DuckDB (:mod:`threadline_analytics.report`).
"""
