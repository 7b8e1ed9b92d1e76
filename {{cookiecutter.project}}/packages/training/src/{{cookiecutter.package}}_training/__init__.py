"""Training pipeline: the stages that take raw events to a promoted model."""
