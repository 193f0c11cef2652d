"""Multi-stage runs (RLHF today; RLAIF and Constitutional AI next): a pipeline is a run whose stages
are ordinary runs, a later stage taking an earlier one's final model. A new pipeline is an entry in
definitions.py; spec.py expands it to stage RunSpecs, prepare.py writes the directories,
registry.py registers them, drive.py runs the stages in order, cli.py reads the command line.
"""
