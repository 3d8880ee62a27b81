"""Jobs: the stages composed into what a user runs (one floor between the server/CLI and the
stages).

- :mod:`.settings`: job kinds, their declared settings and input files, the presets;
- :mod:`.configs`: settings -> the stages' typed configs, once;
- :mod:`.job`: write, read and run (or resume) a job folder; :mod:`.folder`: its paths;
  :mod:`.steps`: resumable steps;
- the job kinds: :mod:`.image_to_4d` (generate, animate), :mod:`.demo`;
- :mod:`.static_sources` (where the static Gaussians come from), :mod:`.outputs`,
  :mod:`.preview`, :mod:`.progress` (console events).
"""

from ..io.job_folder import JobFolder
from .job import RUNNERS, read_job, run_job, write_job
from .settings import INPUTS, PRESETS, SETTINGS, JobError, Preset, Setting, validate_settings

__all__ = [
    "INPUTS",
    "PRESETS",
    "RUNNERS",
    "SETTINGS",
    "JobError",
    "JobFolder",
    "Preset",
    "Setting",
    "read_job",
    "run_job",
    "validate_settings",
    "write_job",
]
