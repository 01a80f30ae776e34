"""The report: every notebook executed under one profile, merged, rendered to HTML and PDF.

``build("smoke")`` is what ``make report PROFILE=smoke`` and ``vitwatch report --profile smoke``
run. Order of work, one module each:

1. :mod:`~vitwatch.report.resources`: the profile's downloads are checked (cached or reachable)
   before any notebook starts (:func:`preflight`);
2. :mod:`~vitwatch.report.kernel`: each notebook of ``notebooks/`` runs in order with papermill
   into ``reports/<profile>/executed/``, in a kernel whose start-up noise is filtered
   (:mod:`~vitwatch.report.noise`); :mod:`~vitwatch.report.builder` reuses a notebook whose
   source, profile and package are unchanged since its last successful run (an interrupted
   build resumes; the notebooks' own caches resume within a notebook);
3. a failing notebook stops the build with the notebook and cell named
   (:class:`ReportError`); the previous good report stays in place;
4. :mod:`~vitwatch.report.render` merges the executed notebooks into ``vitwatch-report.html``
   and :mod:`~vitwatch.report.pdf` prints it to ``vitwatch-report.pdf``, both written
   atomically.
"""

from .builder import EXIT_NO_PDF, REPORT_NAME, build, notebooks
from .errors import ReportError
from .kernel import execute
from .noise import filtered_stderr
from .resources import preflight, required_resources

__all__ = [
    "EXIT_NO_PDF",
    "REPORT_NAME",
    "ReportError",
    "build",
    "execute",
    "filtered_stderr",
    "notebooks",
    "preflight",
    "required_resources",
]
