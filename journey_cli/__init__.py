"""The ``journey`` command (console script): operator and marketer tooling around the jobs."""
