"""Core library: data contract, interaction matrix, recommenders, metrics, serving artifact."""
