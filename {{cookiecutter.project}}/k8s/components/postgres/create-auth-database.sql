-- MLflow's basic-auth users and permissions live apart from the tracking data.
CREATE DATABASE mlflow_auth;
