"""A run directory and its records: one owner for every file a run writes.

``RunDir`` (``directory``) reads and writes the files and holds the run's lock (``lock``);
``SampleRecord`` (``records``) is one sample, holding its ``EvalResult``; ``RunStats``
(``stats``) counts a run's records once for the loop, the summary, the report and sweeps;
``jsonl`` writes whole fsynced lines and repairs a torn last one. It sits in the evaluator
package beside the scoring side because the after-the-run report reads it: the loop above
writes it, the report and the sweeps read it, all through this one module.
"""

from eqforge.evaluator.rundir.directory import RunDir, package_versions
from eqforge.evaluator.rundir.lock import RunBusy
from eqforge.evaluator.rundir.records import SampleRecord
from eqforge.evaluator.rundir.stats import RunStats, failure_counts

__all__ = ["RunBusy", "RunDir", "RunStats", "SampleRecord", "failure_counts", "package_versions"]
