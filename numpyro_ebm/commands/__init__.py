"""The work behind ``numpyro-ebm train``, ``sample`` and ``evaluate``, one module each.

:mod:`numpyro_ebm.cli` parses the arguments and calls these; each module also offers its work
as a Python function (``train.train_run``, ``sample.sample_run``, ``evaluate.evaluate_run``) and
the lines the command prints (``report``). Run folders are :mod:`numpyro_ebm.runs`.
"""
