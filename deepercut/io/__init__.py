"""Input/output helpers shared by the stages: nothing here imports the engine."""
