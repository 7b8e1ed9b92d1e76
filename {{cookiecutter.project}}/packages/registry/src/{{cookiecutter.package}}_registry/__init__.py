"""Registry actions and views: approve, rollback, audit and lineage of registered model versions."""
