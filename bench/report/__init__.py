"""``python -m bench.report``: comparison reports built from run records alone.

Modules, one job each: ``loading`` (every record under a results directory into pandas
frames; the notebooks use it too), ``reference`` (the published figures and their sources),
``tables`` and ``plots`` (what the report shows, grouped by hardware), ``document`` (the
report as sections), ``markdown`` and ``html`` (the two renderings), ``build`` (everything
written into the output folder so that a crash never leaves half a report).
"""
