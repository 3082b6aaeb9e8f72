"""Experiment sweeps: problems × strategies × models × seeds as one resumable command.

``spec`` reads and resolves a sweep file into planned runs, ``execute`` runs them (local
processes or Ray) into one sweep directory, ``worker`` is what runs one of them, ``table``
aggregates the run directories into results tables and ``report`` draws the curves and
writes the HTML sweep report. ``eqforge sweep`` (``eqforge.cli``) is the front door.
"""
