"""The Cheetah Messaging API, one module per job (import from the module, not from the package):

* ``settings.py``: the account's settings, one pydantic model (labels, variables, demo values);
* ``contract.py``: paths, limits, request bodies; with ``records.py`` (the values replies are read
  into), ``parsers.py`` (reading them) and ``ids.py`` (ids as received);
* ``transport.py``: session, retries, token; ``error_mapping.py``: HTTP outcomes to ``errors.py``;
* ``redaction.py``: no credential or token in a log record;
* ``client.py``: one method per endpoint; ``resource.py``: the Dagster resource.
"""
