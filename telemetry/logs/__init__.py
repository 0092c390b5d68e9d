"""Logs as telemetry: parse any format, mine templates with Drain3, detect log anomalies.

Stages, one module each: ``reading`` (bytes to numbered text lines), ``formats`` and
``detection`` (lines to records), ``masking`` and ``templates`` (records to templates),
``anomalies`` (templates to alerts), and the evaluations beside them.
"""
