"""Fraud and anomaly detection: rules and statistics that raise alarms (docs/anomaly.md).

One module per rule: ``sales_rate`` (sales per hour against the machine's own history),
``failure_rate`` (vend-failure and refund rates), ``door`` (door opened without a service
login), ``cash`` (cash collected against cash reported and counted), ``declines`` (one card
declined again and again), ``credentials`` (one machine's credentials on two connections).
``base`` is what they share, ``registry`` lists them, ``schema`` validates the
``anomaly:`` block. The ``anomaly`` integration sets them up and sends their alarms to the
``alarm`` integration; nothing here knows where alarms go.
"""
