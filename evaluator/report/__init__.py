"""After the run, for people: ``eqforge report RUN_DIR`` as HTML or markdown, with plots.

    data        the run read back through the run directory; predictions; ``Report``
    facts       the header's numbers and shared formatting
    build       analyse, draw and cache a report; ``write_report``
    html        the self-contained HTML
    markdown    the markdown variant
    plots       matplotlib figures as PNG
    transcript  the agent conversation behind the best program
"""

from eqforge.evaluator.report.build import build, write_report
from eqforge.evaluator.report.data import Report, RunData, load_run

__all__ = ["Report", "RunData", "build", "load_run", "write_report"]
